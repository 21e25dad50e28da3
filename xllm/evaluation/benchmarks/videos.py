"""Importers of the video benchmarks: MSVD-QA and MSRVTT-QA (test), VATEX captions (val) and MSR-VTT captions
(test).

Each reads the annotation file that LAVIS's dataset builder reads in X-InstructBLIP's eval config
(`lavis/projects/xinstruct_blip/eval/vicuna7b/video/*.yaml`, `datasets:` block); VATEX's own distributed
file is read too. Rows follow `benchmark.py`.
"""

from pathlib import Path

from .annotation_files import annotation_file, grouped_captions, json_records, media_path, require
from .benchmark import Benchmark, ImportOptions


def read_video_qa(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """LAVIS's video QA files (`qa_test.json` of MSVD and MSR-VTT): a list of `{"video", "question", "answer",
    "question_id"}` (`VideoQAInstructDataset.__getitem__`, lavis/datasets/datasets/video_vqa_datasets.py:66-84;
    `instance_id_key: question_id` in the eval configs). Media: `{video}` under `--media-dir`. One reference
    answer: scored by exact match after VQA normalisation, as LAVIS's `gqa` task does."""
    path = annotation_file(annotations, "qa_test.json")
    rows = []
    for index, record in enumerate(json_records(path)):
        require(record, ("video", "question", "answer", "question_id"), path, index)
        rows.append(
            {
                "id": str(record["question_id"]),
                "videos": media_path(media_dir, record["video"]),
                "prompt": record["question"],
                "answers": [record["answer"]],
            }
        )
    return rows


def read_msrvtt_caption_test(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """LAVIS's `cap_test.json` of MSR-VTT: records `{"video": "video7010.mp4", "caption", ...}`, the
    captions of one video in one record or in several (`VideoCaptionEvalDataset`,
    lavis/datasets/datasets/video_caption_datasets.py:48-80, which evaluates each video once). Every
    caption of a video is a reference. Media: `{video}` under `--media-dir`; the id is the video name."""
    path = annotation_file(annotations, "cap_test.json")
    captions = grouped_captions(json_records(path), "video", "caption", path)
    return [
        {"id": video, "videos": media_path(media_dir, video), "references": references}
        for video, references in captions.items()
    ]


def read_vatex_caption_val(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """VATEX validation captions, from LAVIS's `cap_val.json` (records `{"video", "caption"}`,
    `VATEXCaptionDataset`, lavis/datasets/datasets/vatex_captioning_datasets.py:47-58; eval/vicuna7b/video/
    vatex_captioning.yaml `val`, media `{video}`) or from VATEX's own `vatex_validation_v1.0.json`
    (records `{"videoID", "enCap": [ten English captions]}`, media `{videoID}.mp4`). `--annotations` names
    either file, or a folder holding `cap_val.json`. The id is the video name."""
    path = annotation_file(annotations, "cap_val.json")
    records = json_records(path)
    if "videoID" in records[0]:
        for index, record in enumerate(records):
            require(record, ("videoID", "enCap"), path, index)
        records = [{"video": f"{record['videoID']}.mp4", "caption": record["enCap"]} for record in records]
    captions = grouped_captions(records, "video", "caption", path)
    return [
        {"id": video, "videos": media_path(media_dir, video), "references": references}
        for video, references in captions.items()
    ]


BENCHMARKS = (
    Benchmark(
        name="msvd_qa_test",
        modality="video",
        task="vqa",
        annotations="qa_test.json (MSVD)",
        media="{video} under the MSVD videos folder",
        read=read_video_qa,
        decoding="vicuna7b/video/msvd_qa",
        source="eval/vicuna7b/video/msvd_qa.yaml (test); lavis/datasets/datasets/video_vqa_datasets.py:65-84",
    ),
    Benchmark(
        name="msrvtt_qa_test",
        modality="video",
        task="vqa",
        annotations="qa_test.json (MSR-VTT)",
        media="{video} under the MSR-VTT videos folder",
        read=read_video_qa,
        decoding="vicuna7b/video/msrvtt_qa_test",
        source="eval/vicuna7b/video/msrvtt_qa_test.yaml (test); lavis/datasets/datasets/video_vqa_datasets.py:65-84",
    ),
    Benchmark(
        name="vatex_caption_val",
        modality="video",
        task="captioning",
        annotations="cap_val.json (or VATEX's vatex_validation_v1.0.json)",
        media="{video} (VATEX's file: {videoID}.mp4) under the VATEX videos folder",
        read=read_vatex_caption_val,
        decoding="vicuna7b/video/vatex_captioning",
        source="eval/vicuna7b/video/vatex_captioning.yaml (val); lavis/datasets/datasets/vatex_captioning_datasets.py:47-58",
    ),
    Benchmark(
        name="msrvtt_caption_test",
        modality="video",
        task="captioning",
        annotations="cap_test.json (MSR-VTT)",
        media="{video} (e.g. video7010.mp4) under the MSR-VTT videos folder",
        read=read_msrvtt_caption_test,
        decoding="vicuna7b/video/msrvtt_captioning_test",
        source="eval/vicuna7b/video/msrvtt_captioning_test.yaml (test); lavis/datasets/datasets/video_caption_datasets.py:48-80",
    ),
)

__all__ = ["BENCHMARKS"]
