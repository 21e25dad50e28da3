"""The DisCRn benchmarks' files in the layout of LAVIS's release, a handful of items each (`LAYOUTS`:
benchmark name -> writer(folder) -> (annotations, media_dir))."""

import io
import json
from collections.abc import Callable
from pathlib import Path

from conftest import random_image
from media_files import mp4_bytes

from benchmark_layouts.audio import flac, write_file
from benchmark_layouts.point_clouds import coloured_cloud, npz_bytes


def record(sample_ids, question, label, modalities, **extra) -> dict:
    """A record of LAVIS's DisCRn JSON (discriminatory_reasoning_datasets.py reads these keys)."""
    return {
        "sample_ids": sample_ids,
        "question": question,
        "label": label,
        "captions": ["a dog barks", "a car passes"],
        "properties": ["loud, animal", "fast, vehicle"],
        **{f"captions_pred_{modality}": ["caption one", "caption two"] for modality in modalities},
        **extra,
    }


AUDIO_VIDEO_RECORDS = [
    record(
        ["--0w1YA1Hm4", "-1nRJqBTnbs"],
        "Which entity is louder",
        0,
        ("audio", "video"),
        start_seconds=[30.0, 7.0],
    ),
    record(
        ["-1nRJqBTnbs", "0AaAgCDzAI8"],
        "Which entity moves faster?",
        0,
        ("audio", "video"),
        start_seconds=[7.0, 12.0],
    ),
    record(
        ["0AaAgCDzAI8", "--0w1YA1Hm4"],
        "Which audio has a person speaking",
        1,
        ("audio", "video"),
        start_seconds=[12.0, 30.0],
    ),
]


def discrn_audio_video(folder: Path) -> tuple[Path, Path]:
    annotations = write_file(folder / "discrn" / "audiocaps.json", json.dumps(AUDIO_VIDEO_RECORDS).encode())
    media = folder / "audiocaps_media"
    clips = {
        (sample, int(start))
        for entry in AUDIO_VIDEO_RECORDS
        for sample, start in zip(entry["sample_ids"], entry["start_seconds"], strict=True)
    }
    for seed, (sample, start) in enumerate(sorted(clips)):
        write_file(media / "audio" / f"{sample}_{start}.flac", flac(300 + 100 * seed))
        write_file(media / "video" / f"{sample}_{start}.mp4", mp4_bytes(frames=4, seed=seed))
    return annotations, media


IMAGE_3D_RECORDS = [
    record(
        ["ed51a51909ee46c780db3a85e821feb2", "0a8a29b1ac5f4bc8aa6e2b7b3e5a1d6c"],
        "Which object can hold tea",
        1,
        ("image", "pc"),
    ),
    record(
        ["0a8a29b1ac5f4bc8aa6e2b7b3e5a1d6c", "ed51a51909ee46c780db3a85e821feb2"],
        "Which image shows furniture?",
        0,
        ("image", "pc"),
    ),
    record(
        ["7c1e4b5d2f8a4e9b9d3c6a1f0e2b4d8c", "0a8a29b1ac5f4bc8aa6e2b7b3e5a1d6c"],
        "Which object is faster?",
        0,
        ("image", "pc"),
    ),
]


def jpeg_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    random_image(seed, size=24).save(buffer, format="JPEG")
    return buffer.getvalue()


def discrn_image_3d(folder: Path) -> tuple[Path, Path]:
    annotations = write_file(folder / "discrn" / "objaverse.json", json.dumps(IMAGE_3D_RECORDS).encode())
    media = folder / "objaverse_media"
    objects = sorted({sample for entry in IMAGE_3D_RECORDS for sample in entry["sample_ids"]})
    for seed, sample in enumerate(objects):
        write_file(
            media / "images" / "compressed_imgs_view2" / "Cap3D_imgs_view2" / f"{sample}_2.jpeg",
            jpeg_bytes(seed),
        )
        write_file(media / "pc" / sample / f"{sample}_8192.npz", npz_bytes(coloured_cloud(seed)))
    return annotations, media


LAYOUTS: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "discrn_audio_video": discrn_audio_video,
    "discrn_image_3d": discrn_image_3d,
}
