"""Tests of `xllm evaluate`: manifests, published decoding settings, metrics and reports."""

import argparse
import json

import pytest
from conftest import random_image

from xllm.evaluation.cli import add_evaluation_commands
from xllm.evaluation.runner import TASKS, Prompt, evaluate_rows, load_video, read_manifest, single_medium

ROWS = [
    {
        "id": "a",
        "caption": "a red circle",
        "question": "what colour is it ?",
        "answer": "red",
        "label": "red",
    },
    {
        "id": "b",
        "caption": "a blue square",
        "question": "what shape is it ?",
        "answer": "square",
        "label": "blue",
    },
    {
        "id": "c",
        "caption": "a green star",
        "question": "what colour is it ?",
        "answer": "green",
        "label": "green",
    },
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")


@pytest.fixture(scope="module")
def image_manifest(tmp_path_factory):
    """Three items with a tiny image each (paths relative to the manifest) and every task's columns."""
    folder = tmp_path_factory.mktemp("manifest")
    (folder / "media").mkdir()
    with (folder / "items.jsonl").open("w") as lines:
        for seed, row in enumerate(ROWS):
            random_image(seed, size=20).save(folder / "media" / f"{row['id']}.png")
            item = dict(
                row, image=f"media/{row['id']}.png", references=[row["caption"]], transcript=row["caption"]
            )
            lines.write(json.dumps(item) + "\n")
    return folder / "items.jsonl"


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xllm")
    add_evaluation_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


class ScriptedGenerator:
    """Stands in for the model: answers each prompt with the text it is given, records settings."""

    def __init__(self, answers: list[str]):
        self.answers = answers
        self.calls = []

    def chat_prompt(self, media, instruction):
        return Prompt(f"Question: {instruction}\n Answer: ", media, instruction)

    def __call__(self, prompts, generation):
        self.calls.append((prompts, generation))
        return self.answers[: len(prompts)]


def test_captioning_and_short_answer_tasks_use_published_decoding_settings():
    assert TASKS["captioning"].generation == {"num_beams": 5, "max_new_tokens": 80, "min_new_tokens": 10}
    assert TASKS["vqa"].generation == {"num_beams": 5, "max_new_tokens": 10}


def test_overrides_replace_only_the_named_settings(image_manifest):
    rows = read_manifest(image_manifest)
    generator = ScriptedGenerator([row["caption"] for row in ROWS])
    result = evaluate_rows(TASKS["captioning"], rows, generator, {"max_new_tokens": 3})
    assert generator.calls[0][1] == {"num_beams": 5, "max_new_tokens": 3, "min_new_tokens": 10}
    assert result.generation == generator.calls[0][1]


@pytest.mark.parametrize(
    "task, answer_column, expected",
    [
        ("captioning", "caption", {"bleu_1": 1.0, "bleu_3": 1.0, "rouge_l": 1.0}),
        ("vqa", "answer", {"vqa_accuracy": 1.0}),
        ("asr", "caption", {"wer": 0.0, "cer": 0.0}),
        ("classification", "label", {"accuracy": 1.0, "invalid_rate": 0.0}),
    ],
)
def test_reference_answers_score_perfectly(image_manifest, task, answer_column, expected):
    rows = read_manifest(image_manifest)
    result = evaluate_rows(TASKS[task], rows, ScriptedGenerator([row[answer_column] for row in ROWS]))
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, abs=1e-9)


def test_wrong_vqa_answers_score_zero(image_manifest):
    result = evaluate_rows(TASKS["vqa"], read_manifest(image_manifest), ScriptedGenerator(["seven"] * 3))
    assert result.metrics["vqa_accuracy"] == 0.0


def test_classification_question_lists_every_class(image_manifest):
    generator = ScriptedGenerator(["red"] * 3)
    evaluate_rows(TASKS["classification"], read_manifest(image_manifest), generator)
    assert generator.calls[0][0][0].instruction == "Which of these is it: blue, green, red?"


def test_manifest_media_paths_resolve_against_the_manifest_folder(image_manifest):
    rows = read_manifest(image_manifest, limit=2)
    assert len(rows) == 2
    modality, path = single_medium(rows[0])
    assert modality == "image" and path == image_manifest.parent / "media" / "a.png" and path.is_file()


def test_non_positive_limit_is_rejected(image_manifest):
    with pytest.raises(ValueError, match="limit"):
        read_manifest(image_manifest, limit=0)


def test_row_without_media_is_rejected():
    with pytest.raises(ValueError, match="exactly one media column"):
        single_medium({"caption": "a red circle"})


def test_video_folder_loads_its_frames_in_name_order(tmp_path):
    for index in (2, 0, 1):
        random_image(index, size=8).save(tmp_path / f"frame_{index}.png")
    frames = load_video(tmp_path)
    assert [frame.tobytes() for frame in frames] == [random_image(i, size=8).tobytes() for i in range(3)]


@pytest.mark.parametrize("task", ["captioning", "vqa", "asr", "classification"])
def test_evaluate_command_writes_json_markdown_and_predictions(
    saved_tiny_dir, image_manifest, tmp_path, task
):
    status = run_cli(
        ["evaluate", "--task", task, "--model", str(saved_tiny_dir), "--data", str(image_manifest),
         "--output", str(tmp_path), "--limit", "2", "--batch-size", "2", "--num-beams", "2",
         "--max-new-tokens", "2", "--min-new-tokens", "1"]
    )  # fmt: skip
    assert status == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["task"] == task and report["items"] == 2
    assert report["generation"] == {"num_beams": 2, "max_new_tokens": 2, "min_new_tokens": 1}
    assert report["metrics"] and all(isinstance(value, float) for value in report["metrics"].values())
    table = (tmp_path / "report.md").read_text()
    assert all(f"| {name} |" in table for name in report["metrics"])
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [item["id"] for item in predictions] == ["a", "b"]
