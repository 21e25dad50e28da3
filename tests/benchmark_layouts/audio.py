"""The audio benchmarks' files in their distributed layout, a handful of items each (`LAYOUTS`: benchmark
name -> writer(folder) -> (annotations, media_dir)), for the importer tests and the end-to-end runs."""

import csv
from collections.abc import Callable
from pathlib import Path

import torch
from media_files import flac_bytes, tone, wav_bytes


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def flac(frequency: float) -> bytes:
    return flac_bytes(torch.from_numpy(tone(0.5, frequency))[None], rate=16000)


# AudioCaps test.csv rows: (audiocap_id, youtube_id, start_time, caption); five per clip in the real file.
AUDIOCAPS_ROWS = [
    [103549, "--0w1YA1Hm4", 30, "A vehicle driving as a man and woman are talking and laughing"],
    [103548, "--0w1YA1Hm4", 30, "A man speaks while a vehicle engine idles"],
    [107852, "-1nRJqBTnbs", 7, "A dog barks repeatedly"],
    [107853, "-1nRJqBTnbs", 7, "Dogs bark while wind blows"],
    [108007, "0AaAgCDzAI8", 12, "Water runs from a faucet"],
]


def audiocaps_test(folder: Path) -> tuple[Path, Path]:
    annotations = write_csv(
        folder / "audiocaps" / "dataset" / "test.csv",
        ["audiocap_id", "youtube_id", "start_time", "caption"],
        AUDIOCAPS_ROWS,
    )
    media = folder / "audiocaps" / "audio"
    clips = {(youtube_id, start) for _, youtube_id, start, _ in AUDIOCAPS_ROWS}
    for index, (youtube_id, start) in enumerate(sorted(clips)):
        write_file(media / "test" / f"{youtube_id}_{start}.flac", flac(300 + 100 * index))
    return annotations, media


CLOTHO_ROWS = [
    [
        "Santa Motor.wav",
        "A machine whines and squeals",
        "A motor squeals",
        "An engine runs",
        "A machine hums",
        "A motor runs",
    ],
    [
        "Rain Drops.wav",
        "Rain falls on a roof",
        "Water drips",
        "Rain patters",
        "Drops fall",
        "It rains softly",
    ],
    ["bells_01.wav", "Bells ring", "A bell tolls", "Church bells ring", "Bells chime", "A bell rings twice"],
]


def clotho_eval(folder: Path) -> tuple[Path, Path]:
    columns = ["file_name", *(f"caption_{number}" for number in range(1, 6))]
    annotations = write_csv(folder / "clotho" / "clotho_captions_evaluation.csv", columns, CLOTHO_ROWS)
    media = folder / "clotho" / "clotho_audio_files"
    for index, row in enumerate(CLOTHO_ROWS):
        write_file(media / "evaluation" / row[0], wav_bytes(0.5, 300 + 100 * index))
    return annotations, media


# ClothoAQA: three rows (annotators) per question; only unanimous, non-binary questions are evaluated.
CLOTHO_AQA_ROWS = [
    *[["birds.wav", "What animal is singing?", "bird", 1]] * 3,
    *[["birds.wav", "Is it raining?", answer, 1] for answer in ("no", "no", "no")],
    *[["traffic.wav", "What passes by?", answer, 1] for answer in ("car", "truck", "car")],
    *[["traffic.wav", "How many horns honk?", "two", 1]] * 3,
    *[["birds.wav", "Where are the birds?", "trees", 1]] * 3,
]


def clotho_aqa_test(folder: Path) -> tuple[Path, Path]:
    header = ["file_name", "QuestionText", "answer", "confidence"]
    annotations = write_csv(folder / "clotho_aqa" / "clotho_aqa_test.csv", header, CLOTHO_AQA_ROWS)
    media = folder / "clotho_aqa" / "audio_files"
    for index, name in enumerate(("birds.wav", "traffic.wav")):
        write_file(media / name, wav_bytes(0.5, 500 + 100 * index))
    return annotations, media


ESC50_ROWS = [
    ["1-100032-A-0.wav", 1, 0, "dog", True, 100032, "A"],
    ["1-115545-A-20.wav", 1, 20, "crying_baby", False, 115545, "A"],
    ["2-102414-B-0.wav", 2, 0, "dog", True, 102414, "B"],
]


def esc50(folder: Path) -> tuple[Path, Path]:
    root = folder / "ESC-50-master"
    write_csv(
        root / "meta" / "esc50.csv",
        ["filename", "fold", "target", "category", "esc10", "src_file", "take"],
        ESC50_ROWS,
    )
    for index, row in enumerate(ESC50_ROWS):
        write_file(root / "audio" / row[0], wav_bytes(0.5, 200 + 150 * index))
    return root, root / "audio"


LAYOUTS: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "audiocaps_test": audiocaps_test,
    "clotho_eval": clotho_eval,
    "clotho_aqa_test": clotho_aqa_test,
    "esc50": esc50,
}
