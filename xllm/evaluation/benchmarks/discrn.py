"""Importers of X-InstructBLIP's DisCRn benchmark: audio-video (AudioCaps clips) and image-3D (Objaverse
objects), from the JSON files LAVIS releases (github.com/salesforce/LAVIS projects/xinstructblip/README.md:
`discrn/audiocaps.json`, `discrn/objaverse.json`; not in the repository).

Their schema is what `DisCRnDataset` reads (lavis/datasets/datasets/discriminatory_reasoning_datasets.py;
builders `audio_video_discrn` and `image_pc_discrn`, lavis/datasets/builders/discrn_builders.py:14-28):
a JSON list of records with `sample_ids` (the two entities, AudioCaps YouTube ids or Objaverse ids),
`question`, `label` (0: the first entity answers, 1: the second), `captions` and `properties` of the two
entities, each modality's `captions_pred_<modality>` (the caption baseline's captions; a record whose
caption of its input is missing is skipped by LAVIS, :107-109) and, for AudioCaps, `start_seconds`.
The first input is the first modality of the entity `sample_ids[0]`, the second the second modality of
`sample_ids[1]` (:148-149), in the configs' fixed order (audio then video, image then 3D:
`data_type`, discrn/audio_video_describe.yaml:115, image_3d_describe.yaml:92; `shuffle_modalities:
False`).

Labels are balanced as LAVIS balances them (`balance_labels: True`, :113-121): on every item whose
label equals its index's parity (an even index labelled 0, an odd one labelled 1) the label is flipped.
LAVIS flips only the label, properties and captions there, not the media, so its gold answer then names
the wrong input; here the two entities trade places with the label (the modality order stays fixed), so
the labels are LAVIS's and each one names the input that answers (see the README's differences).

Rows: a user turn with the two media parts in presentation order and the question (as written; the
DisCRn task rewrites it as LAVIS does), each medium in its modality's column, the label "first" /
"second"; the id is the record's index in the file, LAVIS's `instance_id`.
"""

from dataclasses import dataclass
from pathlib import Path

from .annotation_files import annotation_file, json_records, media_path, require
from .benchmark import Benchmark, ImportOptions
from .point_clouds import decode_point_cloud, objaverse_cloud

POSITIONS = ("first", "second")
OBJAVERSE_VIEW = 2  # the rendered view DisCRn shows (`view` default, discriminatory_reasoning_datasets.py:49)


@dataclass(frozen=True)
class DiscrnPairing:
    """One DisCRn split: its two modalities in order, the file, the media of one entity's modality."""

    modalities: tuple[str, str]  # processor modality names
    lavis_modalities: tuple[str, str]  # LAVIS's names (the `captions_pred_<name>` keys)
    file_name: str
    keys: tuple[str, ...]

    def media(self, modality: str, record: dict, entity: int, media_dir: Path) -> str:
        sample_id = str(record["sample_ids"][entity])
        if modality in ("audio", "video"):
            start = int(float(record["start_seconds"][entity]))
            suffix, folder = (".flac", "audio") if modality == "audio" else (".mp4", "video")
            return media_path(media_dir, f"{folder}/{sample_id}_{start}{suffix}")  # :83-89
        if modality == "image":
            view = f"compressed_imgs_view{OBJAVERSE_VIEW}/Cap3D_imgs_view{OBJAVERSE_VIEW}"
            return media_path(media_dir, f"images/{view}/{sample_id}_{OBJAVERSE_VIEW}.jpeg")  # :75-78
        return objaverse_cloud(media_dir / "pc", sample_id)  # :98-100


AUDIO_VIDEO = DiscrnPairing(
    ("audio", "video"),
    ("audio", "video"),
    "audiocaps.json",
    ("sample_ids", "start_seconds", "question", "label"),
)
IMAGE_3D = DiscrnPairing(
    ("image", "point_cloud"), ("image", "pc"), "objaverse.json", ("sample_ids", "question", "label")
)
KEYWORDS = {"audio": "audio", "video": "videos", "image": "images", "point_cloud": "point_clouds"}


def has_baseline_captions(record: dict, pairing: DiscrnPairing) -> bool:
    """LAVIS's skip rule (:107-109): each input's `captions_pred_<modality>` entry must be there (a file
    without such keys is taken whole)."""
    for position, name in enumerate(pairing.lavis_modalities):
        key = f"captions_pred_{name}"
        if key in record and (record[key] is None or record[key][position] is None):
            return False
    return True


def checked_record(record: dict, pairing: DiscrnPairing, path: Path, index: int) -> None:
    require(record, pairing.keys, path, index)
    pairs = [key for key in ("sample_ids", "start_seconds") if key in pairing.keys]
    for key in pairs:
        if not isinstance(record[key], list) or len(record[key]) != 2:
            raise ValueError(
                f"Record {index} of {str(path)!r}: {key!r} must list the two entities, got {record[key]!r}."
            )
    if record["label"] not in (0, 1):
        raise ValueError(
            f"Record {index} of {str(path)!r}: label must be 0 or 1 (the entity that answers), got {record['label']!r}."
        )
    if not isinstance(record["question"], str) or not record["question"].strip():
        raise ValueError(
            f"Record {index} of {str(path)!r}: question must be a non-empty string, got {record['question']!r}."
        )


def discrn_rows(annotations: Path, media_dir: Path, pairing: DiscrnPairing) -> list[dict]:
    path = annotation_file(annotations, pairing.file_name)
    rows = []
    for index, record in enumerate(json_records(path)):
        checked_record(record, pairing, path, index)
        if not has_baseline_captions(record, pairing):
            continue
        label = record["label"]
        entities = (0, 1)
        if label == index % 2:  # LAVIS's balancing flips this label (:114); the entities trade places with it
            label, entities = 1 - label, (1, 0)
        first, second = pairing.modalities
        content = [{"type": first}, {"type": second}, {"type": "text", "text": record["question"]}]
        rows.append(
            {
                "id": str(index),
                "messages": [{"role": "user", "content": content}],
                KEYWORDS[first]: pairing.media(first, record, entities[0], Path(media_dir)),
                KEYWORDS[second]: pairing.media(second, record, entities[1], Path(media_dir)),
                "label": POSITIONS[label],
            }
        )
    return rows


def read_discrn_audio_video(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """DisCRn audio-video (`audiocaps.json`, defaults_mm_audio_video.yaml:51-63): the audio of one AudioCaps
    clip and the video of another, `{media_dir}/audio/{youtube_id}_{int(start)}.flac` and
    `{media_dir}/video/{youtube_id}_{int(start)}.mp4` (LAVIS's audio and video roots, :83-89)."""
    return discrn_rows(annotations, media_dir, AUDIO_VIDEO)


def read_discrn_image_3d(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """DisCRn image-3D (`objaverse.json`, defaults_mm_image_pc.yaml:36-48): a rendered view of one Objaverse
    object and the point cloud of another, `{media_dir}/images/compressed_imgs_view2/Cap3D_imgs_view2/{id}_2.jpeg`
    (Cap3D's rendered images, :75-78) and `{media_dir}/pc/{id}/{id}_8192.npz` (:98-100)."""
    return discrn_rows(annotations, media_dir, IMAGE_3D)


def decode_image_or_point_cloud(path: str, options: ImportOptions):
    """The image-3D pair's media: images as the image loader reads them (a corrupt one named), point files
    by `decode_point_cloud` (`.npz` is not a `datasets.Mesh` format)."""
    if Path(path.split("::")[0]).suffix.lower() in (".jpeg", ".jpg", ".png"):
        from xllm.processing.image_loading_xllm import checked_image  # imports torch: not at registry import

        return checked_image(path, path)
    return decode_point_cloud(path, options)


BENCHMARKS = (
    Benchmark(
        name="discrn_audio_video",
        modality="discrn",
        task="discrn",
        annotations="audiocaps.json (LAVIS's DisCRn release, sfr-xinstructblip-data-research/data/discrn/)",
        media="audio/{youtube_id}_{int(start_seconds)}.flac and video/{youtube_id}_{int(start_seconds)}.mp4",
        read=read_discrn_audio_video,
        decoding="discrn/audio_video_describe",
        source="lavis/configs/datasets/discriminatory_reasoning/defaults_mm_audio_video.yaml:51-63; "
        "lavis/datasets/datasets/discriminatory_reasoning_datasets.py:32-162",
    ),
    Benchmark(
        name="discrn_image_3d",
        modality="discrn",
        task="discrn",
        annotations="objaverse.json (LAVIS's DisCRn release, sfr-xinstructblip-data-research/data/discrn/)",
        media="images/compressed_imgs_view2/Cap3D_imgs_view2/{id}_2.jpeg and pc/{id}/{id}_8192.npz",
        read=read_discrn_image_3d,
        decoding="discrn/image_3d_describe",
        decode=decode_image_or_point_cloud,
        source="lavis/configs/datasets/discriminatory_reasoning/defaults_mm_image_pc.yaml:36-48; "
        "lavis/datasets/datasets/discriminatory_reasoning_datasets.py:32-162",
    ),
)

__all__ = ["BENCHMARKS", "read_discrn_audio_video", "read_discrn_image_3d"]
