"""The model card written into saved folders: metadata and model-index parse back with ModelCard.load."""

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import xllm
from xllm import XLLMPreTrainedModel
from xllm.auto_registration import register_auto_classes
from xllm.model_card import MODEL_CARD_TEMPLATE, write_model_card
from xllm.testing import tiny_config, tiny_model_and_processor

REPORT = {
    "task": "captioning",
    "items": 12,
    "metrics": {"cider": 0.75, "bleu_4": 0.25},
    "generation": {"num_beams": 5},
    "model": "out/model",
    "data": "world/test_captions.jsonl",
}


def test_card_metadata_parses_back(tmp_path):
    write_model_card(
        tmp_path, tiny_config(), base_models=["Salesforce/instructblip-vicuna-7b"], datasets=["coco"]
    )
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "any-to-any"
    assert {"xllm", "custom_code", "image", "video"} <= set(data["tags"])
    assert data["base_model"] == ["Salesforce/instructblip-vicuna-7b"]
    assert data["datasets"] == ["coco"]
    assert "model-index" not in data
    assert "No evaluation results were supplied" in card.text


def test_card_model_index_comes_from_the_evaluation_report_file(tmp_path):
    report_path = tmp_path / "report.json"
    report_path.write_text(json.dumps(REPORT))
    write_model_card(tmp_path, tiny_config(), eval_report=report_path, model_name="me/xllm-tiny")
    card = ModelCard.load(tmp_path / "README.md")
    results = {result.metric_type: result for result in card.data.eval_results}
    assert card.data.model_name == "me/xllm-tiny"
    assert sorted(card.data.metrics) == ["bleu_4", "cider"]
    assert results["cider"].metric_value == pytest.approx(0.75)
    assert results["cider"].task_type == "image-to-text"
    assert results["bleu_4"].dataset_name == "test_captions"
    assert "| cider | 0.7500 |" in card.text
    assert "| image | `clip_vision_model` | qformer | 4 | 2 | yes |" in card.text


def test_report_without_metrics_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'task' and 'metrics'"):
        write_model_card(tmp_path, tiny_config(), eval_report={"task": "captioning"})


def test_template_ships_inside_the_package_and_the_repository_card_links_to_it():
    assert MODEL_CARD_TEMPLATE.parent == Path(xllm.__file__).resolve().parent  # package data: in the wheel
    repository_card = Path(__file__).resolve().parent.parent / "model_card.md"
    assert repository_card.resolve() == MODEL_CARD_TEMPLATE


def test_plain_save_pretrained_writes_the_card_and_keeps_a_richer_one(tmp_path, monkeypatch):
    monkeypatch.setattr(XLLMPreTrainedModel, "model_card_writer", None)  # restored after the test
    register_auto_classes()  # sets the card writer again
    model, _ = tiny_model_and_processor(speech_model_type=None, audio_model_type=None, point_clouds=False)
    model.save_pretrained(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.pipeline_tag == "any-to-any"
    assert "| image | `clip_vision_model` | qformer | 4 | 2 | yes |" in card.text

    write_model_card(tmp_path, model.config, eval_report=REPORT)
    model.save_pretrained(tmp_path)
    assert ModelCard.load(tmp_path / "README.md").data.eval_results[0].metric_value == pytest.approx(0.75)


def test_a_benchmark_report_names_its_benchmark_in_the_card(tmp_path):
    """`xllm evaluate --benchmark` reports carry the benchmark's name instead of a manifest path."""
    report = {
        "task": "vqa",
        "benchmark": "okvqa_val",
        "items": 5,
        "partial": True,
        "metrics": {"vqa_accuracy": 0.4},
    }
    write_model_card(tmp_path, tiny_config(), eval_report=report, model_name="me/xllm-tiny")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.eval_results[0].dataset_name == "okvqa_val"
    assert "**vqa** on okvqa_val (partial: `--limit`) (5 items)" in card.text


@pytest.mark.parametrize("frame_positions", [0, 4])
def test_the_card_says_how_the_video_interface_reads_frames(tmp_path, frame_positions):
    config = tiny_config()
    config.video_interface_config.frame_positions = frame_positions
    write_model_card(tmp_path, config)
    text = (tmp_path / "README.md").read_text()
    with_time = "The video interface has video time (`frame_positions=4`"
    alone = "The video interface reads each frame alone and\nconcatenates the outputs in time order"
    assert (with_time in text, alone in text) == (bool(frame_positions), not frame_positions)
    assert "The audio interface reads each window alone" in text
    assert text.count("`xllm serve FOLDER` serves the model") == 1
