"""X-LLM's released training recipe: which parameters train in stage 2 (video) and stage 3."""

from pathlib import Path

import pytest
from transformers import TrainingArguments

from xllm.testing import tiny_model_and_processor
from xllm.trainers.stage2_alignment import AlignmentTrainer, init_video_from_image
from xllm.trainers.stage3_instruction_tuning import InstructionTuningTrainer
from xllm.trainers.training_run import parse_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def trainable(model) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def arguments(tmp_path) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)


def test_x_llm_stage_three_trains_only_queries_and_adapters(tmp_path):
    # X-LLM xllm.py:129-146: Q-Former, ln_vision, the speech BERT and its input projection frozen;
    # query tokens (image and video) and opt_proj / video_proj / post_bert_proj train.
    model, _ = tiny_model_and_processor()
    InstructionTuningTrainer(model, arguments(tmp_path), interface_parts="queries_and_adapters")
    expected = {f"model.interfaces.{m}.query_tokens" for m in ("image", "video", "audio", "point_cloud")}
    expected |= {
        f"model.interfaces.{m}.adapter.{p}" for m in model.config.modalities for p in ("weight", "bias")
    }
    assert trainable(model) == expected
    speech = model.model.interfaces["speech"]
    assert not any(p.requires_grad for p in speech.layers.parameters())
    assert not speech.input_projection.weight.requires_grad and speech.adapter.weight.requires_grad


def test_whole_interfaces_train_by_default(tmp_path):
    model, _ = tiny_model_and_processor()
    InstructionTuningTrainer(model, arguments(tmp_path))
    assert trainable(model) == {n for n, _ in model.named_parameters() if n.startswith("model.interfaces.")}


def test_x_llm_video_stage_two_keeps_the_image_qformer_frozen_and_equal(tmp_path):
    # X-LLM xllm_video.py:96-114: video queries and video_proj train over the frozen image Q-Former.
    model, _ = tiny_model_and_processor()
    init_video_from_image(model)
    AlignmentTrainer(model, arguments(tmp_path), modalities=["video"], interface_parts="queries_and_adapters")
    assert trainable(model) == {
        "model.interfaces.video.query_tokens", "model.interfaces.video.adapter.weight",
        "model.interfaces.video.adapter.bias",
    }  # fmt: skip
    image, video = model.model.interfaces["image"], model.model.interfaces["video"]
    for name, parameter in video.qformer.state_dict().items():
        assert parameter.equal(image.qformer.state_dict()[name])


def test_unknown_interface_parts_are_refused(tmp_path):
    model, _ = tiny_model_and_processor()
    with pytest.raises(ValueError, match="interface_parts.*queries_and_adapters.*'queries'"):
        InstructionTuningTrainer(model, arguments(tmp_path), interface_parts="queries")


@pytest.mark.parametrize(
    "config, parts",
    [
        ("x_llm_stage3.yaml", "queries_and_adapters"),
        ("x_llm_stage2_video.yaml", "queries_and_adapters"),
        ("x_llm_stage2.yaml", "all"),
    ],  # fmt: skip
)
def test_x_llm_configs_use_the_released_recipe(config, parts):
    _, _, stage_args, _ = parse_config(CONFIGS / config, {"bf16": False})
    assert stage_args.interface_parts == parts
