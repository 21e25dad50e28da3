"""Importers of the speech recognition benchmarks (LibriSpeech-style folders, AISHELL-1 test) on their real
file layouts."""

import pytest
from benchmark_layouts.audio import write_file
from benchmark_layouts.speech import LAYOUTS
from benchmark_rows import fake_generate

from xllm.evaluation.benchmarks.benchmark import ImportOptions
from xllm.evaluation.benchmarks.speech import BENCHMARKS, XLLM_ASR_INSTRUCTION
from xllm.evaluation.runner import evaluate_examples
from xllm.evaluation.tasks import TASKS

NAMED = {benchmark.name: benchmark for benchmark in BENCHMARKS}
OPTIONS = ImportOptions()


def test_librispeech_reads_every_chapter_transcript_with_its_audio_beside_it(tmp_path):
    annotations, media = LAYOUTS["librispeech"](tmp_path)
    rows = NAMED["librispeech"].read(annotations, media, OPTIONS)
    assert [row["id"] for row in rows] == ["1089-134686-0000", "1089-134686-0001", "121-121726-0000"]
    assert rows[2] == {
        "id": "121-121726-0000",
        "speech": str(media / "121" / "121726" / "121-121726-0000.flac"),
        "transcript": "ALSO A POPULAR CONTRIVANCE",
    }
    one_chapter = annotations / "121" / "121726" / "121-121726.trans.txt"
    assert NAMED["librispeech"].read(one_chapter, media, OPTIONS) == rows[2:]


def test_librispeech_wrong_root_and_foreign_utterance_ids_are_named(tmp_path):
    with pytest.raises(
        ValueError, match=r"has no \{speaker\}/\{chapter\}/\{speaker\}-\{chapter\}.trans.txt files"
    ):
        NAMED["librispeech"].read(tmp_path, tmp_path, OPTIONS)
    with pytest.raises(ValueError, match="does not exist; expected a LibriSpeech split folder"):
        NAMED["librispeech"].read(tmp_path / "test-clean", tmp_path, OPTIONS)
    transcript = write_file(tmp_path / "1" / "2" / "1-2.trans.txt", b"3-2-0000 WRONG SPEAKER\n")
    with pytest.raises(
        ValueError, match=r"1-2.trans.txt' must list utterances `1-2-<number>`, got '3-2-0000'"
    ):
        NAMED["librispeech"].read(tmp_path, tmp_path, OPTIONS)
    transcript.write_bytes(b"1-2-0000\n")
    with pytest.raises(
        ValueError, match=r"Line 1 of .* must be `\{speaker\}-\{chapter\}-\{utterance\} TRANSCRIPT`"
    ):
        NAMED["librispeech"].read(tmp_path, tmp_path, OPTIONS)


def test_aishell_keeps_the_test_speakers_utterances_unsegmented_with_x_llm_instruction(tmp_path):
    annotations, media = LAYOUTS["aishell_test"](tmp_path)
    rows = NAMED["aishell_test"].read(annotations, media, OPTIONS)
    assert rows == [
        {
            "id": "BAC009S0764W0121",
            "speech": str(media / "wav" / "test" / "S0764" / "BAC009S0764W0121.wav"),
            "prompt": XLLM_ASR_INSTRUCTION,
            "transcript": "甚至出现交易几乎停滞的情况",
        },
        {
            "id": "BAC009S0764W0122",
            "speech": str(media / "wav" / "test" / "S0764" / "BAC009S0764W0122.wav"),
            "prompt": XLLM_ASR_INSTRUCTION,
            "transcript": "一二线城市虽然也处于调整中",
        },
        {
            "id": "BAC009S0765W0123",
            "speech": str(media / "wav" / "test" / "S0765" / "BAC009S0765W0123.wav"),
            "prompt": XLLM_ASR_INSTRUCTION,
            "transcript": "但因为聚集了过多公共资源",
        },
    ]
    assert (
        NAMED["aishell_test"].read(media, media, OPTIONS) == rows
    )  # the data_aishell folder names the transcript


def test_aishell_media_dir_without_test_speakers_and_bad_ids_are_named(tmp_path):
    annotations, media = LAYOUTS["aishell_test"](tmp_path)
    with pytest.raises(ValueError, match=r"--media-dir must be AISHELL-1's data_aishell folder.*wav/test"):
        NAMED["aishell_test"].read(annotations, tmp_path, OPTIONS)
    annotations.write_text("utt1 你好\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match="must list AISHELL utterance ids such as BAC009S0764W0121, got 'utt1'"
    ):
        NAMED["aishell_test"].read(annotations, media, OPTIONS)
    with pytest.raises(ValueError, match=r"has no transcript/aishell_transcript_v0.8.txt"):
        NAMED["aishell_test"].read(media / "wav", media, OPTIONS)


@pytest.mark.parametrize("name", ["librispeech", "aishell_test"])
def test_speech_rows_are_scored_by_the_asr_task(name, tmp_path):
    annotations, media = LAYOUTS[name](tmp_path)
    rows = NAMED[name].read(annotations, media, OPTIONS)
    truth = {row["speech"].rsplit("/", 1)[1]: row["transcript"] for row in rows}
    generate = fake_generate(lambda media: truth[media[0]])
    result = evaluate_examples(TASKS["asr"], rows, generate)
    assert result.metrics == {"wer": 0.0, "cer": 0.0}
    asked = generate.asked[0].conversation[0]["content"][-1]["text"]
    assert asked == (XLLM_ASR_INSTRUCTION if name == "aishell_test" else "Transcribe the speech.")
