"""Writers of the video benchmarks' real file layouts: a handful of items, LAVIS's annotation files (and
VATEX's own) and tiny MP4 videos named by the dataset's convention. Each writer: folder -> (--annotations,
--media-dir)."""

import json
from collections.abc import Callable
from pathlib import Path

from media_files import mp4_bytes

QUESTIONS = [
    ("what is the man doing?", "cooking"),
    ("who is dancing?", "girl"),
    ("what animal is shown?", "cat"),
]
CAPTIONS = ["a man is cooking", "a girl dances on a stage", "a cat sleeps on a sofa", "someone cooks food"]


def write_video(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(mp4_bytes(frames=4, seed=seed, size=16))


def write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def video_qa(folder: Path, dataset: str, videos: list[str]) -> tuple[Path, Path]:
    for seed, video in enumerate(videos):
        write_video(folder / dataset / "videos" / video, seed)
    records = [
        {"video": video, "question": question, "answer": answer, "question_id": 1000 + index}
        for index, (video, (question, answer)) in enumerate(zip(videos, QUESTIONS, strict=True))
    ]
    return write_json(folder / dataset / "annotations" / "qa_test.json", records), folder / dataset / "videos"


def msvd_qa_test(folder: Path) -> tuple[Path, Path]:
    return video_qa(
        folder, "msvd", ["-4wsuPCjDBc_5_15.avi", "0lh_UWF9ZP4_62_69.avi", "1dfR0A_BXjw_590_600.avi"]
    )


def msrvtt_qa_test(folder: Path) -> tuple[Path, Path]:
    return video_qa(folder, "msrvtt", ["video7010.mp4", "video7011.mp4", "video7012.mp4"])


def msrvtt_caption_test(folder: Path) -> tuple[Path, Path]:
    """One record per caption, as MSR-VTT's captions are listed: two captions for each video."""
    videos = ["video7010.mp4", "video7011.mp4", "video7012.mp4"]
    for seed, video in enumerate(videos):
        write_video(folder / "msrvtt" / "videos" / video, seed)
    records = [
        {"video": video, "caption": CAPTIONS[(index + k) % 4], "image_id": video[:-4]}
        for index, video in enumerate(videos)
        for k in range(2)
    ]
    return write_json(
        folder / "msrvtt" / "annotations" / "cap_test.json", records
    ), folder / "msrvtt" / "videos"


def vatex_caption_val(folder: Path) -> tuple[Path, Path]:
    """VATEX's own `vatex_validation_v1.0.json` (`videoID`, ten English and ten Chinese captions)."""
    ids = ["Ptf_2VRj-V0_000122_000132", "--BfvyPmVMo_000020_000030", "-0Zp1GQ5NzM_000011_000021"]
    for seed, video_id in enumerate(ids):
        write_video(folder / "vatex" / "videos" / f"{video_id}.mp4", seed)
    records = [
        {
            "videoID": video_id,
            "enCap": [CAPTIONS[(index + k) % 4] for k in range(10)],
            "chCap": ["一个人"] * 10,
        }
        for index, video_id in enumerate(ids)
    ]
    return write_json(folder / "vatex" / "vatex_validation_v1.0.json", records), folder / "vatex" / "videos"


LAYOUTS: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "msvd_qa_test": msvd_qa_test,
    "msrvtt_qa_test": msrvtt_qa_test,
    "vatex_caption_val": vatex_caption_val,
    "msrvtt_caption_test": msrvtt_caption_test,
}
