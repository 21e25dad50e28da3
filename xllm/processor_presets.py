"""The processor of each preset: the preset's prompt format and the published preprocessing around a model config.

`preset_processor(name, tokenizer, qformer_tokenizer)` builds the `XLLMProcessor` that goes with
`preset_config(name)`: its query counts, modalities, prompt format, frame sampling and audio windows.

| preset | prompt format | video frames | audio windows |
|---|---|---|---|
| `x-instructblip-7b` / `-13b` / `-7b-linear` | `lavis`, the model type's default config | `num_video_frames`, `headtail` | exactly 2 (10.24 s) |
| `x-llm` | `x-llm` (Chinese) | `num_video_frames`, `uniform` | (no audio interface) |
| `tiny` | `parts` | `num_video_frames`, `uniform` | every window |

An X-InstructBLIP evaluation reads the eval config instead: `lavis_config=` takes a LAVIS eval yaml (path,
parsed dict or `LavisEvalConfig`) and sets the prompt format, frame count and window count it gives. This file
lives outside `xllm/processing/`, whose files travel with checkpoints and may not import the model.
"""

from dataclasses import dataclass
from pathlib import Path

from transformers import BlipImageProcessor
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from .modeling_xllm import preset_config
from .processing import (
    XLLMAudioFeatureExtractor,
    XLLMPointCloudFeatureExtractor,
    XLLMProcessor,
    XLLMVideoProcessor,
)
from .processing.prompt_formats_xllm import (
    LavisEvalConfig,
    LavisPromptFormat,
    XLLMPromptFormat,
    lavis_eval_config,
    lavis_model_default_format,
)


@dataclass(frozen=True)
class PresetInputs:
    """How a preset's processor prepares inputs; `lavis_model_type` names the LAVIS default config (None: not
    X-InstructBLIP)."""

    prompt_format: "LavisPromptFormat | XLLMPromptFormat | None"  # None: "parts"
    frame_sampling: str = "uniform"
    audio_windows: int | None = None  # None: every window
    lavis_model_type: str | None = None


PRESET_INPUTS = {
    "x-llm": PresetInputs(XLLMPromptFormat()),
    "x-instructblip-7b": PresetInputs(lavis_model_default_format("vicuna7b"), "headtail", 2, "vicuna7b"),
    "x-instructblip-13b": PresetInputs(lavis_model_default_format("vicuna13b"), "headtail", 2, "vicuna13b"),
    "x-instructblip-7b-linear": PresetInputs(
        lavis_model_default_format("vicuna7b"), "headtail", 2, "vicuna7b"
    ),
    "tiny": PresetInputs(None),
}


def preset_prompt_format(name: str) -> dict:
    """The prompt format a preset's processor saves (`{"name": ..., **options}`)."""
    inputs = _preset_inputs(name)
    return {"name": "parts"} if inputs.prompt_format is None else inputs.prompt_format.to_dict()


def preset_processor(
    name: str,
    tokenizer,
    qformer_tokenizer,
    image_processor=None,
    lavis_config: "str | Path | dict | LavisEvalConfig | None" = None,
) -> XLLMProcessor:
    """The `XLLMProcessor` of preset `name` over the LLM's and the Q-Former's tokenizers.

    `image_processor` defaults to BLIP's at the vision config's size with CLIP's mean and std (LAVIS's
    `clip_image_eval` normalisation). `lavis_config` (X-InstructBLIP presets only) replaces the prompt format,
    the video frame count and the audio window count by an eval config's."""
    inputs = _preset_inputs(name)
    config = preset_config(name)
    prompt_format, num_frames, audio_windows = (
        inputs.prompt_format,
        config.num_video_frames,
        inputs.audio_windows,
    )
    if lavis_config is not None:
        if inputs.lavis_model_type is None:
            raise ValueError(f"`lavis_config` is for the X-InstructBLIP presets; {name!r} is not one.")
        evaluation = (
            lavis_config if isinstance(lavis_config, LavisEvalConfig) else lavis_eval_config(lavis_config)
        )
        prompt_format = evaluation.prompt_format
        num_frames = evaluation.num_video_frames or num_frames
        audio_windows = evaluation.num_audio_windows or audio_windows
    size = config.vision_config.image_size
    if image_processor is None:
        image_processor = BlipImageProcessor(
            size={"height": size, "width": size}, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD
        )
    point_cloud_config = config.encoder_config("point_cloud")
    return XLLMProcessor(
        image_processor=image_processor,
        video_processor=XLLMVideoProcessor(
            size={"height": size, "width": size}, num_frames=num_frames, frame_sampling=inputs.frame_sampling
        ),
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        audio_feature_extractor=XLLMAudioFeatureExtractor(num_windows=audio_windows),
        point_cloud_feature_extractor=XLLMPointCloudFeatureExtractor(
            num_points=8192, in_channels=point_cloud_config.in_channels if point_cloud_config else None
        ),
        num_query_tokens={
            m: config.interface_config(m).num_query_tokens for m in config.modalities if m != "speech"
        },
        modalities=list(config.modalities),
        modality_cues=config.modality_cues if prompt_format is None else None,
        prompt_format=prompt_format,
        chat_template=None if prompt_format is None else prompt_format.chat_template(),
    )


def _preset_inputs(name: str) -> PresetInputs:
    if name not in PRESET_INPUTS:
        raise ValueError(f"`name` must be one of {sorted(PRESET_INPUTS)}, got {name!r}.")
    return PRESET_INPUTS[name]


__all__ = ["PRESET_INPUTS", "PresetInputs", "preset_processor", "preset_prompt_format"]
