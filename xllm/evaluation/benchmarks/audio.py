"""Importers of the audio benchmarks: AudioCaps test and Clotho v2 captions (captioning), ClothoAQA test (QA),
ESC-50 (classification over its 50 class names).

Each reads the CSV file that LAVIS's dataset builder reads in X-InstructBLIP's eval config
(`lavis/projects/xinstruct_blip/eval/vicuna7b/audio/*.yaml`, `datasets:` block), as the dataset
distributes it, and finds the audio the way that builder does, with `--media-dir` standing for the
config's `audio: storage:` folder. Rows follow `benchmark.py`; the `datasets.Audio` feature decodes the
files (wav, flac), so no `decode` hook is needed.
"""

import re
from pathlib import Path

from .annotation_files import annotation_file, media_path
from .annotation_tables import csv_records
from .benchmark import Benchmark, ImportOptions

CLOTHO_CAPTION_COLUMNS = tuple(f"caption_{number}" for number in range(1, 6))
CLOTHO_CAPTION_FILE = re.compile(r"clotho_captions_(\w+)\.csv")


def start_second(value: str, path: Path, row: int) -> int:
    """AudioCaps' `start_time` as LAVIS names the clip: the whole second (`int(start_seconds)`)."""
    try:
        return int(float(value))
    except ValueError as error:
        raise ValueError(
            f"Row {row} of {str(path)!r}: start_time must be a number of seconds, got {value!r}."
        ) from error


def read_audiocaps_test(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """AudioCaps' `dataset/test.csv` (github.com/cdjkim/audiocaps; columns `audiocap_id, youtube_id,
    start_time, caption`, five rows per clip; named by lavis/configs/datasets/audiocaps/defaults_mm_cap.yaml:42-46),
    as the builder `audiocaps_mm_caption_instruct` (lavis/datasets/builders/audio_caption_builder.py:75-82)
    has `AudioCapsEvalDataset` read it
    (lavis/datasets/datasets/audio_captioning_datasets.py:164-237; eval/vicuna7b/audio/
    audiocaps_captioning_test.yaml:113-120, `sample_id_key: youtube_id`, :152).

    LAVIS evaluates each clip once (the first of its rows, :227-231) and names its audio
    `{audio root}/{split}/{youtube_id}_{int(start_time)}.flac` (:167-170, :182-186): here
    `{media_dir}/test/{youtube_id}_{start}.flac`. The references are every caption of the clip; with
    `options.lavis_references` only the first one, which is all LAVIS scores against (its ground truth is
    built from the deduplicated rows' single `caption`, lavis/tasks/captioning.py:203-212)."""
    path = annotation_file(annotations, "test.csv")
    clips: dict[str, dict] = {}
    for row, record in enumerate(csv_records(path, ("youtube_id", "start_time", "caption")), start=2):
        clip = clips.get(record["youtube_id"])
        if clip is None:
            start = start_second(record["start_time"], path, row)
            clip = clips[record["youtube_id"]] = {
                "id": record["youtube_id"],
                "audio": media_path(media_dir, f"test/{record['youtube_id']}_{start}.flac"),
                "references": [],
            }
        clip["references"].append(record["caption"])
    rows = list(clips.values())
    if options.lavis_references:
        rows = [{**clip, "references": clip["references"][:1]} for clip in rows]
    return rows


def read_clotho_captions(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """Clotho v2's `clotho_captions_{split}.csv` (zenodo.org/record/4783391; columns `file_name,
    caption_1 ... caption_5`; lavis/configs/datasets/clotho/defaults_mm_cap.yaml:35-38), as the builder
    `clothov2` (audio_caption_builder.py:84-91) has `ClothoV2Dataset` read it
    (audio_captioning_datasets.py:239-267): the
    split is the file name's last word (:250), the audio `{audio root}/{split}/{file_name}` (:262): here
    `{media_dir}/evaluation/{file_name}` for the evaluation file (Clotho's own archives unpack to that
    folder). The references are the five captions (`caption_key: captions`,
    eval/vicuna7b/audio/clothov2_captioning.yaml:138); the id is the file name (`sample_id_key: sound_id`,
    :139). `--annotations` may also name another split's file (that config reads
    `clotho_captions_validation.csv`, :102-104)."""
    path = annotation_file(annotations, "clotho_captions_evaluation.csv")
    match = CLOTHO_CAPTION_FILE.fullmatch(path.name)
    if match is None:
        raise ValueError(
            f"The Clotho caption file must be named clotho_captions_<split>.csv, as distributed (its split names "
            f"the audio folder), got {str(path)!r}."
        )
    split = match.group(1)
    return [
        {
            "id": record["file_name"],
            "audio": media_path(media_dir, f"{split}/{record['file_name']}"),
            "references": [record[column] for column in CLOTHO_CAPTION_COLUMNS],
        }
        for record in csv_records(path, ("file_name", *CLOTHO_CAPTION_COLUMNS))
    ]


def read_clotho_aqa_test(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """ClothoAQA's `clotho_aqa_test.csv` (zenodo.org/records/6473207; columns `file_name, QuestionText,
    answer, confidence`, three consecutive rows per question, one per annotator;
    lavis/configs/datasets/clotho/defaults_mm_qa.yaml:37-41), as the builder `clotho_qa`
    (lavis/datasets/builders/audio_qa_builder.py:21) has `ClothoQADataset` read it (lavis/datasets/datasets/audio_qa_datasets.py:69-113) with the eval config's filters
    (eval/vicuna7b/audio/clothoQA_captioning.yaml:96-98): only questions whose three answers agree
    (`unanimous`) and none of them is yes or no (`non_bin`). The answers are the three annotators'; the
    id is LAVIS's question id, the index of the question's first row among the file's rows (`instance_id`,
    :87). Audio: `{media_dir}/{file_name}` (:98)."""
    path = annotation_file(annotations, "clotho_aqa_test.csv")
    records = csv_records(path, ("file_name", "QuestionText", "answer"))
    if len(records) % 3:
        raise ValueError(
            f"{str(path)!r} must hold three rows (annotators) per question, got {len(records)} rows."
        )
    rows = []
    for first in range(0, len(records), 3):
        group = records[first : first + 3]
        if len({record["file_name"] for record in group}) != 1:
            raise ValueError(
                f"Rows {first + 2}-{first + 4} of {str(path)!r} must be the three answers of one question about one "
                f"file, got the files {[record['file_name'] for record in group]}."
            )
        answers = [record["answer"] for record in group]
        if len(set(answers)) != 1 or "yes" in answers or "no" in answers:
            continue
        rows.append(
            {
                "id": str(first),
                "audio": media_path(media_dir, group[0]["file_name"]),
                "prompt": group[0]["QuestionText"],
                "answers": answers,
            }
        )
    return rows


def esc50_class(category: str) -> str:
    """An ESC-50 category as LAVIS names the class: underscores as spaces (audio_classification_datasets.py:47)."""
    return category.replace("_", " ")


def read_esc50(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """ESC-50's `meta/esc50.csv` (github.com/karolpiczak/ESC-50; columns `filename, fold, target,
    category, ...`; lavis/configs/datasets/esc50/defaults_mm_cls.yaml:30-34), every one of its 2000 clips
    (all five folds), as the builder `esc50_cls` (lavis/datasets/builders/classification_builder.py:71) has
    `ESC50` read it
    (lavis/datasets/datasets/audio_classification_datasets.py:38-99; eval/vicuna7b/audio/
    esc50_classification.yaml:101-108): the label is the category with spaces for underscores (:88), the
    classes every category of the file (:46-47), the audio `{media_dir}/{filename}` (ESC-50's `audio/`
    folder, :49-50). `--annotations` names the CSV file or the ESC-50 folder holding `meta/esc50.csv`."""
    path = annotation_file(annotations, "meta/esc50.csv")
    records = csv_records(path, ("filename", "category"))
    classes = sorted({esc50_class(record["category"]) for record in records})
    return [
        {
            "id": record["filename"],
            "audio": media_path(media_dir, record["filename"]),
            "label": esc50_class(record["category"]),
            "classes": classes,
        }
        for record in records
    ]


BENCHMARKS = (
    Benchmark(
        name="audiocaps_test",
        modality="audio",
        task="captioning",
        annotations="test.csv (AudioCaps, github.com/cdjkim/audiocaps dataset/test.csv)",
        media="test/{youtube_id}_{int(start_time)}.flac",
        read=read_audiocaps_test,
        decoding="vicuna7b/audio/audiocaps_captioning_test",
        source="eval/vicuna7b/audio/audiocaps_captioning_test.yaml:113-120; "
        "lavis/datasets/datasets/audio_captioning_datasets.py:164-237",
    ),
    Benchmark(
        name="clotho_eval",
        modality="audio",
        task="captioning",
        annotations="clotho_captions_evaluation.csv (Clotho v2.1, zenodo.org/record/4783391)",
        media="evaluation/{file_name}",
        read=read_clotho_captions,
        decoding="vicuna7b/audio/clothov2_captioning",
        source="lavis/configs/datasets/clotho/defaults_mm_cap.yaml:35-40; "
        "lavis/datasets/datasets/audio_captioning_datasets.py:239-267",
    ),
    Benchmark(
        name="clotho_aqa_test",
        modality="audio",
        task="vqa",
        annotations="clotho_aqa_test.csv (ClothoAQA, zenodo.org/records/6473207)",
        media="{file_name}",
        read=read_clotho_aqa_test,
        decoding="vicuna7b/audio/clothoQA_captioning",
        source="eval/vicuna7b/audio/clothoQA_captioning.yaml:96-118; lavis/datasets/datasets/audio_qa_datasets.py:69-113",
    ),
    Benchmark(
        name="esc50",
        modality="audio",
        task="classification",
        annotations="meta/esc50.csv (ESC-50, github.com/karolpiczak/ESC-50)",
        media="{filename} in ESC-50's audio/ folder",
        read=read_esc50,
        decoding="vicuna7b/audio/esc50_classification",
        # LAVIS's `_classification` config ranks the 50 classes by likelihood (`predict_with_gen: False`,
        # eval/vicuna7b/audio/esc50_classification.yaml:76); `_completion` (:76 there: True) generates.
        classify_by="likelihood",
        source="eval/vicuna7b/audio/esc50_classification.yaml:98-108; "
        "lavis/datasets/datasets/audio_classification_datasets.py:38-99",
    ),
)

__all__ = ["BENCHMARKS", "read_audiocaps_test", "read_clotho_aqa_test", "read_clotho_captions", "read_esc50"]
