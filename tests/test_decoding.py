"""Decoding per LAVIS eval config (`xllm.evaluation.decoding`) and what `xllm evaluate` passes to `generate`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xllm.cli import build_parser
from xllm.evaluation.decoding import decoding_from_lavis_config, lavis_decoding, lavis_decoding_table
from xllm.evaluation.tasks import DECODING_CONFIGS, TASKS
from xllm.modeling_xllm.modeling_xllm import XLLMForConditionalGeneration

LAVIS_GIT_DIR = Path("/work/.mirror/salesforce+LAVIS/repo")
REPO = Path(__file__).resolve().parents[1]


def lavis_yaml(task: str, run: str, model: str = "") -> str:
    return f"model:\n  arch: blip2_vicuna_xinstruct\n{model}\nrun:\n  task: {task}\n{run}"


def test_qa_tasks_never_read_length_penalty_from_run():
    # vqa.py:61-67 reads num_beams, max_len, min_len only; predict_answers decodes with -1 (xinstruct.py:1521).
    row = decoding_from_lavis_config(
        lavis_yaml("discrn_qa", "  max_len: 10\n  min_len: 1\n  length_penalty: 1.\n  num_beams: 5\n"),
        "x.yaml",
    )
    assert row["generation"] == {
        "num_beams": 5, "max_new_tokens": 10, "min_new_tokens": 1, "length_penalty": -1.0, "repetition_penalty": 1.5,
        "do_sample": False,
    }  # fmt: skip
    assert row["ignored"] == {"length_penalty": {"value": 1.0, "line": "x.yaml:8"}}
    assert row["sources"]["max_new_tokens"] == "x.yaml:6"


def test_captioning_reads_its_run_keys_and_defaults_repetition_penalty_to_1_15():
    row = decoding_from_lavis_config(
        lavis_yaml("captioning", "  max_len: 80\n  length_penalty: 1.\n"), "c.yaml"
    )
    assert row["generation"] == {
        "num_beams": 5, "max_new_tokens": 80, "min_new_tokens": 1, "repetition_penalty": 1.15, "length_penalty": 1.0,
        "do_sample": False,
    }  # fmt: skip
    assert row["sources"]["repetition_penalty"] == "lavis/tasks/captioning.py:47"


def test_classification_ranks_unless_the_model_predicts_with_generation():
    ranked = decoding_from_lavis_config(lavis_yaml("multimodal_classification", "  max_len: 3\n"), "r.yaml")
    generated = decoding_from_lavis_config(
        lavis_yaml("multimodal_classification", "  max_len: 80\n", "  predict_with_gen: True"), "g.yaml"
    )
    assert ranked["method"] == "rank" and generated["method"] == "generate"
    assert generated["generation"]["num_beams"] == 5 and generated["generation"]["length_penalty"] == -1.0


def test_unknown_lavis_task_is_rejected():
    with pytest.raises(ValueError, match="run.task.*retrieval"):
        decoding_from_lavis_config(lavis_yaml("retrieval", ""), "bad.yaml")


def test_published_discrn_and_qa_rows():
    table = lavis_decoding_table()
    # discrn/audio_video_describe.yaml:150-153; image_3d_describe.yaml:130 writes length_penalty 1. (ignored).
    for name in ("discrn/audio_video_describe", "discrn/image_3d_describe", "discrn/image_3d_describe_13b"):
        assert table[name]["generation"] == {
            "num_beams": 5, "max_new_tokens": 10, "min_new_tokens": 1, "length_penalty": -1.0, "repetition_penalty": 1.5,
            "do_sample": False,
        }  # fmt: skip
    assert table["discrn/image_3d_describe"]["ignored"]["length_penalty"]["value"] == 1.0
    # vicuna7b/pc/objaverse_qa.yaml:141 (its datasets block does not parse, its run block does).
    assert table["vicuna7b/pc/objaverse_qa"]["generation"]["max_new_tokens"] == 80
    assert table["vicuna7b/pc/modelnet40_classification"]["method"] == "rank"
    assert all(name in table for name in DECODING_CONFIGS.values())


@pytest.mark.skipif(not LAVIS_GIT_DIR.is_dir(), reason="needs the LAVIS mirror")
def test_shipped_table_is_what_the_lavis_configs_give(tmp_path):
    shipped = (REPO / "xllm/evaluation/lavis_decoding.json").read_text()
    script = REPO / "scripts/make_lavis_decoding_table.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # The script writes the package's table in place: compare what it writes with what was shipped.
    try:
        subprocess.run(
            [sys.executable, str(script), str(LAVIS_GIT_DIR)], check=True, env=env, capture_output=True
        )
        assert (REPO / "xllm/evaluation/lavis_decoding.json").read_text() == shipped
    finally:
        (REPO / "xllm/evaluation/lavis_decoding.json").write_text(shipped)


def test_a_lavis_yaml_file_can_be_read_directly(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(lavis_yaml("gqa", "  max_len: 7\n  num_beams: 2\n"))
    assert lavis_decoding(path)["generation"]["max_new_tokens"] == 7


def test_unknown_decoding_name_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="no/such/config"):
        lavis_decoding("no/such/config")


@pytest.fixture
def recorded_generation_configs(monkeypatch):
    """Every `generation_config` passed to the model's `generate`, which then runs as usual."""
    configs, original = [], XLLMForConditionalGeneration.generate

    def recording_generate(self, *args, **kwargs):
        configs.append(kwargs["generation_config"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(XLLMForConditionalGeneration, "generate", recording_generate)
    return configs


def image_manifest(folder: Path) -> Path:
    from conftest import random_image

    random_image(1, size=16).save(folder / "a.png")
    rows = [
        {
            "id": "a",
            "images": "a.png",
            "prompt": "what is it?",
            "answers": ["red"],
            "label": "red",
            "references": ["a red square"],
        }
    ]
    (folder / "items.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder / "items.jsonl"


@pytest.mark.parametrize(
    "task, decoding, expected",
    [
        ("vqa", [], TASKS["vqa"].generation),
        (
            "vqa",
            ["--decoding", "discrn/image_3d_describe"],
            lavis_decoding("discrn/image_3d_describe")["generation"],
        ),
        ("captioning", ["--max-new-tokens", "12"], {**TASKS["captioning"].generation, "max_new_tokens": 12}),
    ],
)
def test_evaluate_passes_the_decoding_table_to_generate_as_a_generation_config(
    saved_tiny_dir, tmp_path, recorded_generation_configs, task, decoding, expected
):
    args = build_parser().parse_args(
        ["evaluate", "--task", task, "--model", str(saved_tiny_dir), "--data", str(image_manifest(tmp_path)),
         "--output", str(tmp_path / "out"), *decoding]
    )  # fmt: skip
    assert args.run(args) == 0
    (config,) = recorded_generation_configs
    assert {name: getattr(config, name) for name in expected} == expected
    # The model's own settings stay: placeholders are never generated.
    assert (
        config.suppress_tokens
        == XLLMForConditionalGeneration.from_pretrained(saved_tiny_dir).generation_config.suppress_tokens
    )
    assert json.loads((tmp_path / "out" / "report.json").read_text())["generation"] == expected


def test_classification_by_likelihood_generates_nothing_and_reports_the_method(
    saved_tiny_dir, tmp_path, recorded_generation_configs
):
    args = build_parser().parse_args(
        ["evaluate", "--task", "classification", "--model", str(saved_tiny_dir), "--data",
         str(image_manifest(tmp_path)), "--output", str(tmp_path / "out"), "--classify-by", "likelihood"]
    )  # fmt: skip
    assert args.run(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert recorded_generation_configs == [] and report["method"] == "likelihood"
    # One class: ranking must pick it.
    assert report["metrics"]["accuracy"] == 1.0


def test_classify_by_is_refused_for_other_tasks(tmp_path):
    args = build_parser().parse_args(
        [
            "evaluate",
            "--task",
            "vqa",
            "--model",
            str(tmp_path),
            "--data",
            "x.jsonl",
            "--classify-by",
            "likelihood",
        ]
    )
    with pytest.raises(ValueError, match="--task classification only"):
        args.run(args)


def test_a_ranking_lavis_config_makes_classification_rank_by_likelihood(tmp_path):
    from xllm.commands.evaluate import chosen_task
    from xllm.evaluation.tasks import LIKELIHOOD_CLASSIFICATION

    def task_for(*flags):
        args = build_parser().parse_args(
            ["evaluate", "--task", "classification", "--model", str(tmp_path), "--data", "x.jsonl", *flags]
        )
        return chosen_task(args, lavis_decoding(args.decoding) if args.decoding else None)

    # vicuna7b/pc/modelnet40_classification.yaml: predict_with_gen False, so LAVIS ranks (xinstruct.py:1631).
    assert task_for("--decoding", "vicuna7b/pc/modelnet40_classification") is LIKELIHOOD_CLASSIFICATION
    assert task_for("--decoding", "vicuna7b/audio/esc50_classification_completion") is TASKS["classification"]
    assert task_for() is TASKS["classification"]
    assert task_for("--classify-by", "likelihood") is LIKELIHOOD_CLASSIFICATION
