"""What each modality is to the processor: one row per modality. The processor, the chat template's
content types, the training manifests' columns, the CLI's media flags and the pipelines derive from it.

The rows, their order, their layouts and the model input names they produce are the model table's
(`modeling_xllm/model_modalities.py`); files in this folder travel with saved checkpoints and may not
import the model, so the two tables are kept apart and `tests/test_modality_tables.py` checks that they
agree. The order matters: it is the order in which the processor adds missing placeholder tokens to a
tokenizer, which the presets' token ids assume.

Rules shared by every row: the chat content type is the modality's name; its placeholder is
`<name>`; its CLI flag is `--name` with dashes (`--point-cloud`).

Preparation kinds (how the processor turns a batch of items into tensors):

* `call`: each item goes through `loader`, then the sub-processor takes the whole list; its first
  `model_input_names` entry becomes `outputs[0]` (images, point clouds);
* `video`: the video processor samples frames (`num_frames=`), undecodable files are named;
* `audio_windows`: waveforms cut into windows, a window mask beside them (sounds);
* `speech`: waveforms padded to the longest, an attention mask, optional transcripts whose token
  counts become CIF's target lengths.

Loaders: `image` (files, URLs, bytes, arrays and PIL images checked), `audio` (any waveform, file, bytes or
`datasets.Audio` value, resampled to the extractor's rate), `video` (files, URLs and bytes decoded to the
frames the video processor samples), None (the sub-processor reads the item). Every loader, and the point
cloud extractor, also takes bytes, data URIs and base64 strings (`media_bytes_xllm.py`).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessorModality:
    """One modality as the processor sees it; see the module docstring for the kinds."""

    keyword: str  # `XLLMProcessor.__call__` keyword and training-manifest column
    sub_processor: str  # the processor attribute that prepares its items
    layout: str  # as in the model table: `single`, `windows` or `sequence`
    outputs: tuple[str, ...]  # model inputs it produces: the media tensor, then its mask if any
    preparation: str = "call"
    loader: str | None = None
    chat_keys: tuple[str, ...] = ("path", "url")  # keys of a chat content part that hold its item
    chat_via_transformers: bool = False  # `ProcessorMixin` loads it from chat messages (images, videos)
    datasets_feature: str = "Image"  # the `datasets` feature that decodes its manifest column
    target_lengths: str | None = None  # `sequence` only: the model input of CIF's target lengths
    file_suffixes: tuple[
        str, ...
    ] = ()  # files a chat upload of this modality may be (speech and audio share)


AUDIO_FILE_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac")

MODALITIES: dict[str, ProcessorModality] = {
    "image": ProcessorModality(
        keyword="images",
        sub_processor="image_processor",
        layout="single",
        outputs=("pixel_values",),
        loader="image",
        chat_keys=("image", "url", "path", "base64"),
        chat_via_transformers=True,
        file_suffixes=(".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
    ),
    "video": ProcessorModality(
        keyword="videos",
        sub_processor="video_processor",
        layout="windows",
        outputs=("pixel_values_videos",),
        preparation="video",
        loader="video",
        chat_keys=("video", "url", "path"),
        chat_via_transformers=True,
        datasets_feature="Video",
        file_suffixes=(".mp4", ".webm", ".mov", ".avi", ".mkv"),
    ),
    "speech": ProcessorModality(
        keyword="speech",
        sub_processor="speech_feature_extractor",
        layout="sequence",
        outputs=("speech_features", "speech_attention_mask"),
        preparation="speech",
        loader="audio",
        chat_keys=("speech", "audio", "path", "url"),
        target_lengths="speech_target_lengths",
        datasets_feature="Audio",
        file_suffixes=AUDIO_FILE_SUFFIXES,
    ),
    "audio": ProcessorModality(
        keyword="audio",
        sub_processor="audio_feature_extractor",
        layout="windows",
        outputs=("audio_features", "audio_window_mask"),
        preparation="audio_windows",
        loader="audio",
        chat_keys=("audio", "path", "url"),
        datasets_feature="Audio",
        file_suffixes=AUDIO_FILE_SUFFIXES,
    ),
    "point_cloud": ProcessorModality(
        keyword="point_clouds",
        sub_processor="point_cloud_feature_extractor",
        layout="single",
        outputs=("point_clouds",),
        chat_keys=("point_cloud", "path", "url"),
        datasets_feature="Mesh",
        file_suffixes=(".npy", ".ply", ".obj", ".off", ".stl", ".glb", ".gltf"),
    ),
}


def processor_modality(name: str) -> ProcessorModality:
    """The row of a modality; a ValueError lists the known ones."""
    if name not in MODALITIES:
        raise ValueError(f"Unknown modality {name!r}; expected one of {list(MODALITIES)}.")
    return MODALITIES[name]


def placeholder(modality: str) -> str:
    return f"<{modality}>"


def cli_flag(modality: str) -> str:
    return "--" + modality.replace("_", "-")


def keywords() -> dict[str, str]:
    """Processor keyword (= manifest column) -> modality."""
    return {row.keyword: modality for modality, row in MODALITIES.items()}


__all__ = ["MODALITIES", "ProcessorModality", "cli_flag", "keywords", "placeholder", "processor_modality"]
