"""The speech benchmarks' files in their distributed layout, a handful of items each (`LAYOUTS`: benchmark
name -> writer(folder) -> (annotations, media_dir))."""

from collections.abc import Callable
from pathlib import Path

from media_files import wav_bytes

from benchmark_layouts.audio import flac, write_file

LIBRISPEECH_CHAPTERS = {
    ("1089", "134686"): [
        "HE HOPED THERE WOULD BE STEW FOR DINNER",
        "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM",
    ],
    ("121", "121726"): ["ALSO A POPULAR CONTRIVANCE"],
}


def librispeech(folder: Path) -> tuple[Path, Path]:
    split = folder / "LibriSpeech" / "test-clean"
    for (speaker, chapter), transcripts in LIBRISPEECH_CHAPTERS.items():
        chapter_folder = split / speaker / chapter
        lines = []
        for number, transcript in enumerate(transcripts):
            utterance = f"{speaker}-{chapter}-{number:04d}"
            write_file(chapter_folder / f"{utterance}.flac", flac(250 + 50 * number))
            lines.append(f"{utterance} {transcript}")
        write_file(chapter_folder / f"{speaker}-{chapter}.trans.txt", ("\n".join(lines) + "\n").encode())
    return split, split


# aishell_transcript_v0.8.txt covers every split; S0764 is a test speaker, S0002 a training one.
AISHELL_LINES = {
    "BAC009S0002W0122": "而 对 楼市 成交 抑制 作用 最 大 的 限 购",
    "BAC009S0764W0121": "甚至 出现 交易 几乎 停滞 的 情况",
    "BAC009S0764W0122": "一二 线 城市 虽然 也 处于 调整 中",
    "BAC009S0765W0123": "但 因为 聚集 了 过多 公共 资源",
}


def aishell_test(folder: Path) -> tuple[Path, Path]:
    root = folder / "data_aishell"
    lines = "\n".join(f"{utterance} {words}" for utterance, words in AISHELL_LINES.items()) + "\n"
    transcript = write_file(root / "transcript" / "aishell_transcript_v0.8.txt", lines.encode())
    for number, utterance in enumerate(AISHELL_LINES):
        split = "train" if "S0002" in utterance else "test"
        write_file(
            root / "wav" / split / utterance[6:11] / f"{utterance}.wav", wav_bytes(0.5, 300 + 60 * number)
        )
    return transcript, root


LAYOUTS: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "librispeech": librispeech,
    "aishell_test": aishell_test,
}
