"""Tests of `xllm evaluate`: manifests of the training format, published decoding settings, metrics, reports."""

import json

import pytest
from conftest import random_image

from xllm.cli import build_parser
from xllm.evaluation.runner import evaluate_examples
from xllm.evaluation.tasks import TASKS
from xllm.manifests import load_manifest

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
            item = {
                "id": row["id"],
                "images": f"media/{row['id']}.png",
                "prompt": row["question"],
                "references": [row["caption"]],
                "answers": [row["answer"]],
                "transcript": row["caption"],
                "label": row["label"],
            }
            lines.write(json.dumps(item) + "\n")
    return folder / "items.jsonl"


class ScriptedGenerator:
    """Stands in for the model: answers each prompt with the text it is given, records settings."""

    def __init__(self, answers: list[str]):
        self.answers = answers
        self.calls = []

    def __call__(self, prompts, generation):
        self.calls.append((prompts, generation))
        return self.answers[: len(prompts)]


def test_captioning_and_short_answer_tasks_use_published_decoding_settings():
    # LAVIS vicuna7b/image/coco_captioning_test.yaml:129-134 + captioning.py:47 (repetition 1.15)
    assert TASKS["captioning"].generation == {
        "num_beams": 5, "max_new_tokens": 80, "min_new_tokens": 10, "length_penalty": 1.0, "repetition_penalty": 1.15,
        "do_sample": False,
    }  # fmt: skip
    # LAVIS vicuna7b/image/okvqa_qa.yaml:134-136 + blip2_vicuna_xinstruct.py:1521 (-1) and :1106 (1.5)
    assert TASKS["vqa"].generation == {
        "num_beams": 5, "max_new_tokens": 10, "min_new_tokens": 1, "length_penalty": -1.0, "repetition_penalty": 1.5,
        "do_sample": False,
    }  # fmt: skip


def test_overrides_replace_only_the_named_settings(image_manifest):
    examples = list(load_manifest(image_manifest))
    generator = ScriptedGenerator([row["caption"] for row in ROWS])
    result = evaluate_examples(TASKS["captioning"], examples, generator, {"max_new_tokens": 3})
    assert generator.calls[0][1] == {**TASKS["captioning"].generation, "max_new_tokens": 3}
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
    examples = list(load_manifest(image_manifest))
    result = evaluate_examples(TASKS[task], examples, ScriptedGenerator([row[answer_column] for row in ROWS]))
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, abs=1e-9)


def test_wrong_vqa_answers_score_zero(image_manifest):
    result = evaluate_examples(
        TASKS["vqa"], list(load_manifest(image_manifest)), ScriptedGenerator(["seven"] * 3)
    )
    assert result.metrics["vqa_accuracy"] == 0.0


def test_classification_question_lists_every_class_when_an_example_has_no_prompt(image_manifest):
    examples = [
        {k: v for k, v in example.items() if k != "prompt"} for example in load_manifest(image_manifest)
    ]
    generator = ScriptedGenerator(["red"] * 3)
    evaluate_examples(TASKS["classification"], examples, generator)
    user_turn = generator.calls[0][0][0].conversation[0]
    assert user_turn["content"][-1]["text"] == "Which of these is it: blue, green, red?"


def test_classification_asks_over_the_classes_column_in_its_order_when_examples_carry_it(image_manifest):
    classes = ["yellow", "red", "blue", "green"]  # a benchmark's classes: more than a `--limit` run's labels
    examples = [
        {**{k: v for k, v in example.items() if k != "prompt"}, "classes": classes}
        for example in load_manifest(image_manifest, limit=2)
    ]
    generator = ScriptedGenerator(["red", "yellow"])
    result = evaluate_examples(TASKS["classification"], examples, generator)
    assert generator.calls[0][0][0].conversation[0]["content"][-1]["text"] == (
        "Which of these is it: yellow, red, blue, green?"
    )
    assert result.metrics == {
        "accuracy": 0.5,
        "invalid_rate": 0.0,
    }  # "yellow" is a class, not an invalid answer


def test_the_prompt_follows_the_media_in_the_user_turn(image_manifest):
    generator = ScriptedGenerator(["red"] * 3)
    evaluate_examples(TASKS["vqa"], list(load_manifest(image_manifest)), generator)
    content = generator.calls[0][0][0].conversation[0]["content"]
    assert [part["type"] for part in content] == ["image", "text"]
    assert content[1]["text"] == "what colour is it ?" and content[0]["image"].size == (20, 20)


def test_manifest_media_paths_resolve_against_the_manifest_folder(image_manifest):
    examples = load_manifest(image_manifest, limit=2, decode=False)
    assert len(examples) == 2
    path = examples[0]["images"]["path"]
    assert path == str(image_manifest.parent / "media" / "a.png")
    assert (image_manifest.parent / "media" / "a.png").is_file()


def test_non_positive_limit_is_rejected(image_manifest):
    with pytest.raises(ValueError, match="limit"):
        load_manifest(image_manifest, limit=0)


def test_example_without_media_is_rejected():
    with pytest.raises(ValueError, match="media column"):
        evaluate_examples(
            TASKS["captioning"], [{"id": "x", "response": "a red circle"}], ScriptedGenerator(["a"])
        )


def test_missing_manifest_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="missing.jsonl.*does not exist"):
        load_manifest(tmp_path / "missing.jsonl", name="data")


@pytest.mark.parametrize("task", ["captioning", "vqa", "asr", "classification"])
def test_evaluate_command_writes_json_markdown_and_predictions(
    saved_tiny_dir, image_manifest, tmp_path, task
):
    args = build_parser().parse_args(
        ["evaluate", "--task", task, "--model", str(saved_tiny_dir), "--data", str(image_manifest),
         "--output", str(tmp_path), "--limit", "2", "--batch-size", "2", "--num-beams", "2",
         "--max-new-tokens", "2", "--min-new-tokens", "1"]
    )  # fmt: skip
    assert args.run(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["task"] == task and report["items"] == 2
    assert report["generation"] == {
        **TASKS[task].generation,
        "num_beams": 2,
        "max_new_tokens": 2,
        "min_new_tokens": 1,
    }
    assert report["metrics"] and all(isinstance(value, float) for value in report["metrics"].values())
    table = (tmp_path / "report.md").read_text()
    assert all(f"| {name} |" in table for name in report["metrics"])
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [item["id"] for item in predictions] == ["a", "b"]


def evaluate_cli(model_dir, task: str, manifest, output) -> dict:
    args = build_parser().parse_args(
        ["evaluate", "--task", task, "--model", str(model_dir), "--data", str(manifest), "--output", str(output),
         "--num-beams", "1", "--max-new-tokens", "2", "--min-new-tokens", "1"]
    )  # fmt: skip
    assert args.run(args) == 0
    predictions = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
    return {"report": json.loads((output / "report.json").read_text()), "predictions": predictions}


@pytest.mark.parametrize("keyword", ["images", "videos", "audio", "point_clouds"])
def test_captioning_evaluates_every_qformer_modality_from_an_exported_manifest(
    saved_tiny_dir, world_data, tmp_path, keyword
):
    manifest = world_data / "test" / f"{keyword}.jsonl"
    result = evaluate_cli(saved_tiny_dir, "captioning", manifest, tmp_path)
    assert result["report"]["items"] == 2 and {"cider", "bleu_4", "rouge_l"} <= set(
        result["report"]["metrics"]
    )
    captions = [
        json.loads(line)["messages"][1]["content"][0]["text"] for line in manifest.read_text().splitlines()
    ]
    assert [item["reference"] for item in result["predictions"]] == [[caption] for caption in captions]


def test_asr_evaluates_speech_from_an_exported_manifest(saved_tiny_dir, world_data, tmp_path):
    manifest = world_data / "test" / "speech.jsonl"
    result = evaluate_cli(saved_tiny_dir, "asr", manifest, tmp_path)
    assert set(result["report"]["metrics"]) == {"wer", "cer"}
    transcripts = [json.loads(line)["transcript"] for line in manifest.read_text().splitlines()]
    assert [item["reference"] for item in result["predictions"]] == transcripts
