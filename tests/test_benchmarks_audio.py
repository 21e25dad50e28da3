"""Importers of the audio benchmarks (AudioCaps, Clotho, ClothoAQA, ESC-50) on their real file layouts."""

import pytest
from benchmark_layouts.audio import LAYOUTS, write_csv
from benchmark_rows import fake_generate, fake_rank

from xllm.evaluation.benchmarks.audio import BENCHMARKS
from xllm.evaluation.benchmarks.benchmark import ImportOptions
from xllm.evaluation.decoding import lavis_decoding
from xllm.evaluation.runner import evaluate_examples
from xllm.evaluation.tasks import LIKELIHOOD_CLASSIFICATION, TASKS

NAMED = {benchmark.name: benchmark for benchmark in BENCHMARKS}


def imported(name, tmp_path, options: ImportOptions | None = None):
    annotations, media = LAYOUTS[name](tmp_path)
    return NAMED[name].read(annotations, media, options or ImportOptions()), media


def test_every_audio_benchmark_has_a_layout_and_a_published_decoding_config():
    assert set(NAMED) == set(LAYOUTS) == {"audiocaps_test", "clotho_eval", "clotho_aqa_test", "esc50"}
    for benchmark in BENCHMARKS:
        assert lavis_decoding(benchmark.decoding)["generation"]
    assert (
        lavis_decoding(NAMED["esc50"].decoding)["method"] == "rank"
        and NAMED["esc50"].classify_by == "likelihood"
    )


def test_audiocaps_gives_each_clip_once_with_every_caption_and_its_whole_second_file(tmp_path):
    rows, media = imported("audiocaps_test", tmp_path)
    assert [row["id"] for row in rows] == ["--0w1YA1Hm4", "-1nRJqBTnbs", "0AaAgCDzAI8"]
    assert rows[0]["audio"] == str(media / "test" / "--0w1YA1Hm4_30.flac")
    assert rows[1]["references"] == ["A dog barks repeatedly", "Dogs bark while wind blows"]
    annotations = write_csv(
        tmp_path / "other" / "test.csv",
        ["audiocap_id", "youtube_id", "start_time", "caption"],
        [[1, "abc", "7.9", "x"]],
    )
    assert (
        NAMED["audiocaps_test"]
        .read(annotations, media, ImportOptions())[0]["audio"]
        .endswith("test/abc_7.flac")
    )


def test_audiocaps_with_lavis_references_scores_against_the_first_caption_only(tmp_path):
    rows, _ = imported("audiocaps_test", tmp_path, ImportOptions(lavis_references=True))
    assert [row["references"] for row in rows] == [
        ["A vehicle driving as a man and woman are talking and laughing"],
        ["A dog barks repeatedly"],
        ["Water runs from a faucet"],
    ]


def test_audiocaps_start_time_must_be_a_number(tmp_path):
    annotations = write_csv(
        tmp_path / "test.csv",
        ["audiocap_id", "youtube_id", "start_time", "caption"],
        [[1, "abc", "soon", "x"]],
    )
    with pytest.raises(ValueError, match=r"Row 2 of .*test.csv.*start_time must be a number"):
        NAMED["audiocaps_test"].read(annotations, tmp_path, ImportOptions())


def test_clotho_reads_the_split_folder_from_the_file_name(tmp_path):
    rows, media = imported("clotho_eval", tmp_path)
    assert rows[0]["id"] == "Santa Motor.wav" and rows[0]["audio"] == str(
        media / "evaluation" / "Santa Motor.wav"
    )
    assert len(rows[1]["references"]) == 5
    columns = ["file_name", *(f"caption_{n}" for n in range(1, 6))]
    validation = write_csv(tmp_path / "v" / "clotho_captions_validation.csv", columns, [["a.wav", *"abcde"]])
    assert NAMED["clotho_eval"].read(validation, media, ImportOptions())[0]["audio"] == str(
        media / "validation" / "a.wav"
    )
    renamed = write_csv(tmp_path / "v" / "captions.csv", columns, [["a.wav", *"abcde"]])
    with pytest.raises(ValueError, match=r"clotho_captions_<split>\.csv"):
        NAMED["clotho_eval"].read(renamed, media, ImportOptions())


def test_clotho_aqa_keeps_the_unanimous_non_binary_questions_with_lavis_question_ids(tmp_path):
    rows, media = imported("clotho_aqa_test", tmp_path)
    assert [(row["id"], row["prompt"], row["answers"]) for row in rows] == [
        ("0", "What animal is singing?", ["bird"] * 3),
        ("9", "How many horns honk?", ["two"] * 3),
        ("12", "Where are the birds?", ["trees"] * 3),
    ]
    assert rows[1]["audio"] == str(media / "traffic.wav")


def test_clotho_aqa_rows_must_come_in_threes_about_one_file(tmp_path):
    header = ["file_name", "QuestionText", "answer", "confidence"]
    short = write_csv(tmp_path / "a" / "clotho_aqa_test.csv", header, [["a.wav", "q", "x", 1]] * 4)
    with pytest.raises(ValueError, match="three rows .* per question, got 4 rows"):
        NAMED["clotho_aqa_test"].read(short, tmp_path, ImportOptions())
    mixed = write_csv(
        tmp_path / "b" / "clotho_aqa_test.csv",
        header,
        [["a.wav", "q", "x", 1]] * 2 + [["b.wav", "q", "x", 1]],
    )
    with pytest.raises(
        ValueError, match=r"Rows 2-4 .* one file, got the files \['a.wav', 'a.wav', 'b.wav'\]"
    ):
        NAMED["clotho_aqa_test"].read(mixed, tmp_path, ImportOptions())


def test_esc50_labels_are_lavis_class_names_and_every_item_lists_every_class(tmp_path):
    rows, media = imported("esc50", tmp_path)
    assert [(row["id"], row["label"]) for row in rows] == [
        ("1-100032-A-0.wav", "dog"),
        ("1-115545-A-20.wav", "crying baby"),
        ("2-102414-B-0.wav", "dog"),
    ]
    assert all(row["classes"] == ["crying baby", "dog"] for row in rows)
    assert rows[1]["audio"] == str(media / "1-115545-A-20.wav")
    csv_file = tmp_path / "ESC-50-master" / "meta" / "esc50.csv"
    assert NAMED["esc50"].read(csv_file, media, ImportOptions()) == rows


def test_wrong_root_missing_file_and_missing_column_name_the_file_and_what_was_expected(tmp_path):
    LAYOUTS["esc50"](tmp_path)
    with pytest.raises(ValueError, match=r"has no meta/esc50.csv"):
        NAMED["esc50"].read(tmp_path / "ESC-50-master" / "meta", tmp_path, ImportOptions())
    with pytest.raises(ValueError, match=r"does not exist; expected the file test.csv"):
        NAMED["audiocaps_test"].read(tmp_path / "nowhere", tmp_path, ImportOptions())
    broken = write_csv(tmp_path / "x" / "test.csv", ["youtube_id", "caption"], [["abc", "a caption"]])
    with pytest.raises(
        ValueError,
        match=r"test.csv.*columns \['youtube_id', 'start_time', 'caption'\]; it lacks \['start_time'\]",
    ):
        NAMED["audiocaps_test"].read(broken, tmp_path, ImportOptions())
    empty = write_csv(
        tmp_path / "y" / "test.csv",
        ["audiocap_id", "youtube_id", "start_time", "caption"],
        [[1, "abc", 3, ""]],
    )
    with pytest.raises(ValueError, match=r"Row 2 of .* has no value in \['caption'\]"):
        NAMED["audiocaps_test"].read(empty, tmp_path, ImportOptions())


@pytest.mark.parametrize("name", ["audiocaps_test", "clotho_eval"])
def test_captioning_rows_are_scored_by_the_captioning_task(name, tmp_path):
    rows, _ = imported(name, tmp_path)
    first_reference = {row["audio"].rsplit("/", 1)[1]: row["references"][0] for row in rows}
    generate = fake_generate(lambda media: first_reference[media[0]])
    result = evaluate_examples(TASKS["captioning"], rows, generate)
    assert len(generate.asked) == len(rows)
    assert {"cider", "bleu_4", "rouge_l"} <= set(result.metrics)
    assert result.metrics["bleu_1"] == pytest.approx(1.0)


def test_clotho_aqa_rows_are_scored_by_vqa_accuracy_over_the_three_answers(tmp_path):
    rows, _ = imported("clotho_aqa_test", tmp_path)
    result = evaluate_examples(TASKS["vqa"], rows, fake_generate(lambda media: "bird"))
    # VQA accuracy over three annotators, as LAVIS's VQAEval scores them (lavis/tasks/vqa.py:173-185): an
    # answer all three gave scores min(1, 2/3) against each leave-one-out pair, so 2/3; the other items 0.
    assert result.metrics["vqa_accuracy"] == pytest.approx(2 / 9)


def test_esc50_rows_are_classified_by_likelihood_and_by_generation(tmp_path):
    rows, _ = imported("esc50", tmp_path)
    truth = {row["audio"].rsplit("/", 1)[1]: row["label"] for row in rows}
    ranked = evaluate_examples(
        LIKELIHOOD_CLASSIFICATION, rows, None, rank=fake_rank(lambda media: truth[media[0]])
    )
    assert ranked.predictions == ["dog", "crying baby", "dog"] and ranked.metrics["accuracy"] == 1.0
    generated = evaluate_examples(TASKS["classification"], rows, fake_generate(lambda media: "dog"))
    assert generated.metrics["accuracy"] == pytest.approx(2 / 3)
