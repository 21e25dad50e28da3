"""Importers of the speech recognition benchmarks: LibriSpeech-style folders (`*.trans.txt` beside the
audio) and AISHELL-1 test (Chinese, the language of X-LLM's speech interface).

Neither is evaluated by LAVIS. X-LLM evaluates Chinese ASR on AISHELL-2's iOS test set
(run_scripts/eval/eval_asr_aishell2.sh; xllm/configs/datasets/aishell2/defaults_asr_zh.yaml:20-22) from
a JSON of its own precomputed speech features (`speech_feats_path`, `target_text`,
xllm/datasets/datasets/asr_datasets.py:43-59) that is not distributed, and its eval config
(`asr_aishell2_eval.yaml`) is not in its repository; so these importers read each corpus's own
distributed transcripts. The `datasets.Audio` feature decodes the audio (flac, wav). Scoring is the
`asr` task's: WER and CER.
"""

import re
from pathlib import Path

from .annotation_files import annotation_file, media_path
from .annotation_tables import keyed_lines
from .benchmark import Benchmark, ImportOptions

LIBRISPEECH_UTTERANCE = re.compile(r"(\d+)-(\d+)-\d+")
AISHELL_UTTERANCE = re.compile(r"[A-Z0-9]{6}(S\d{4})W\d{4}")  # BAC009S0764W0121: speaker S0764
# X-LLM's instruction for recognising speech at evaluation (asr_datasets.py:133-134: "recognise this speech
# faithfully"); its training prompt adds ChatGLM's `[gMASK]` (:132), which the tokenizer writes itself.
XLLM_ASR_INSTRUCTION = "请忠实地识别该语音"


def read_librispeech(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """A LibriSpeech split folder (openslr.org/12, e.g. `LibriSpeech/test-clean`): every
    `{speaker}/{chapter}/{speaker}-{chapter}.trans.txt`, each line `{speaker}-{chapter}-{utterance} TRANSCRIPT`
    (the corpus's README), the audio beside it: `{media_dir}/{speaker}/{chapter}/{utterance id}.flac`
    (`--media-dir` is the split folder too). `--annotations` names the split folder or one `.trans.txt`.
    The transcript is kept as distributed (upper case); the `asr` task lower-cases both sides."""
    annotations = Path(annotations)
    if annotations.is_file():
        files = [annotations]
    elif annotations.is_dir():
        files = sorted(annotations.glob("*/*/*.trans.txt"))
    else:
        raise ValueError(
            f"--annotations {str(annotations)!r} does not exist; expected a LibriSpeech split folder."
        )
    if not files:
        raise ValueError(
            f"--annotations folder {str(annotations)!r} has no {{speaker}}/{{chapter}}/{{speaker}}-{{chapter}}.trans.txt "
            "files; expected a LibriSpeech split folder such as LibriSpeech/test-clean."
        )
    rows = []
    for path in files:
        for utterance, transcript in keyed_lines(path, "{speaker}-{chapter}-{utterance} TRANSCRIPT"):
            match = LIBRISPEECH_UTTERANCE.fullmatch(utterance)
            if match is None or not path.name.startswith(f"{match.group(1)}-{match.group(2)}."):
                raise ValueError(
                    f"{str(path)!r} must list utterances `{path.name.split('.')[0]}-<number>`, got {utterance!r}."
                )
            speaker, chapter = match.groups()
            audio = media_path(media_dir, f"{speaker}/{chapter}/{utterance}.flac")
            rows.append({"id": utterance, "speech": audio, "transcript": transcript})
    return rows


def read_aishell_test(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """AISHELL-1's test set (openslr.org/33, `data_aishell`): transcripts from
    `transcript/aishell_transcript_v0.8.txt` (one line `{utterance} {words...}` per utterance of every
    split), audio `{media_dir}/wav/test/{speaker}/{utterance}.wav` (`--media-dir` is `data_aishell`, with
    each test speaker's tarball extracted under `wav/test/`). The test utterances are those of the speakers
    found there (the transcript file covers all splits and names no split). The transcript's word
    segmentation spaces are removed: Chinese ASR is scored by characters (CER), and X-LLM's targets are
    unsegmented characters (asr_datasets.py:130-134). Each item asks X-LLM's evaluation instruction."""
    path = annotation_file(annotations, "transcript/aishell_transcript_v0.8.txt")
    test_folder = Path(media_dir) / "wav" / "test"
    speakers = (
        {child.name for child in test_folder.iterdir() if child.is_dir()} if test_folder.is_dir() else set()
    )
    if not speakers:
        raise ValueError(
            f"--media-dir must be AISHELL-1's data_aishell folder, with the test speakers' folders in wav/test/ "
            f"(wav/test/S0764/...); {str(test_folder)!r} has none."
        )
    rows = []
    for utterance, words in keyed_lines(path, "{utterance} {words}"):
        match = AISHELL_UTTERANCE.fullmatch(utterance)
        if match is None:
            raise ValueError(
                f"{str(path)!r} must list AISHELL utterance ids such as BAC009S0764W0121, got {utterance!r}."
            )
        if match.group(1) in speakers:
            rows.append(
                {
                    "id": utterance,
                    "speech": media_path(media_dir, f"wav/test/{match.group(1)}/{utterance}.wav"),
                    "prompt": XLLM_ASR_INSTRUCTION,
                    "transcript": "".join(words.split()),
                }
            )
    if not rows:
        raise ValueError(
            f"{str(path)!r} has no utterance of the test speakers in {str(test_folder)!r} ({sorted(speakers)})."
        )
    return rows


BENCHMARKS = (
    Benchmark(
        name="librispeech",
        modality="speech",
        task="asr",
        annotations="{speaker}/{chapter}/{speaker}-{chapter}.trans.txt of a LibriSpeech split folder",
        media="{speaker}/{chapter}/{utterance}.flac",
        read=read_librispeech,
        source="LibriSpeech's README (openslr.org/12): transcripts beside the audio, one file per chapter",
    ),
    Benchmark(
        name="aishell_test",
        modality="speech",
        task="asr",
        annotations="transcript/aishell_transcript_v0.8.txt (AISHELL-1, openslr.org/33)",
        media="wav/test/{speaker}/{utterance}.wav",
        read=read_aishell_test,
        source="AISHELL-1's data_aishell layout (openslr.org/33); X-LLM's ASR instruction, "
        "xllm/datasets/datasets/asr_datasets.py:133-134",
    ),
)

__all__ = ["BENCHMARKS", "read_aishell_test", "read_librispeech"]
