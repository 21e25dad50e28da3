"""A sixth modality added through the two modality tables alone: depth maps, read by the image encoder.

No other code knows the word "depth": the processor, the chat template, the config, the model's forward
and generate, a stage-2 training step and an evaluation all follow the rows added here.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TrainingArguments

from xllm.evaluation.generation import generate_answers
from xllm.evaluation.runner import evaluate_examples
from xllm.evaluation.tasks import TASKS
from xllm.manifests import load_manifest
from xllm.modeling_xllm import XLLMConfig, XLLMForConditionalGeneration, model_modalities
from xllm.processing import processor_modalities
from xllm.testing import tiny_interface_config, tiny_processor, tiny_text_config, tiny_vision_config
from xllm.trainers.data import XLLMDataCollator
from xllm.trainers.stage2_alignment import AlignmentTrainer


@pytest.fixture
def depth(monkeypatch):
    """The depth rows in both tables, for this test only."""
    monkeypatch.setitem(
        model_modalities.MODALITIES,
        "depth",
        model_modalities.ModelModality(
            encoder="vision", input_name="depth_values", layout="single", cue="depth: "
        ),
    )
    monkeypatch.setitem(
        processor_modalities.MODALITIES,
        "depth",
        processor_modalities.ProcessorModality(
            keyword="depth_maps",
            sub_processor="image_processor",
            layout="single",
            outputs=("depth_values",),
            loader="image",
            chat_keys=("depth", "path", "url"),
        ),
    )


@pytest.fixture
def depth_model(depth):
    processor = tiny_processor(modalities=("image", "depth"))
    config = XLLMConfig(
        text_config=tiny_text_config(vocab_size=len(processor.tokenizer)),
        vision_config=tiny_vision_config(),
        image_interface_config=tiny_interface_config(),
        depth_interface_config=tiny_interface_config(),
        image_token_id=processor.placeholder_ids["image"],
        depth_token_id=processor.placeholder_ids["depth"],
    )
    torch.manual_seed(0)
    return XLLMForConditionalGeneration(config).eval(), processor


def depth_map(seed: int) -> np.ndarray:
    """A (height, width) uint8 depth map: a ramp with noise."""
    rng = np.random.default_rng(seed)
    return (np.linspace(0, 255, 32 * 32).reshape(32, 32) * rng.uniform(0.5, 1.0)).astype(np.uint8)


def depth_example(seed: int, answer: str = "a square") -> dict:
    return {
        "messages": [
            {"role": "user", "content": [{"type": "depth"}, {"type": "text", "text": " describe it"}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "depth_maps": [depth_map(seed)],
    }


def test_the_processor_expands_depth_placeholders_and_prepares_depth_maps(depth_model):
    _, processor = depth_model
    inputs = processor(text=["<depth> what ?", "<image> <depth> which ?"], depth_maps=[depth_map(0), depth_map(1)],
                       images=[Image.new("RGB", (32, 32), "red")])  # fmt: skip
    assert inputs["depth_values"].shape == (2, 3, 32, 32)  # grayscale made RGB, as for images
    assert int((inputs["input_ids"] == processor.placeholder_ids["depth"]).sum()) == 2 * 4
    assert "depth_values" in processor.model_input_names


def test_forward_and_generate_read_depth_through_its_own_interface(depth_model):
    model, processor = depth_model
    inputs = processor(text=["<depth> what ?", "<image> <depth> which ?"], depth_maps=[depth_map(0), depth_map(1)],
                       images=[Image.new("RGB", (32, 32), "red")])  # fmt: skip
    with torch.no_grad():
        outputs = model(**inputs)
    assert outputs.modality_features["depth"].shape == (2, 4, 32)
    instructions = dict(
        qformer_input_ids=inputs["qformer_input_ids"], qformer_attention_mask=inputs["qformer_attention_mask"]
    )
    with torch.no_grad():  # each depth map is in its own sample here, so the instruction rows line up
        by_depth = model.model.get_modality_features("depth", inputs["depth_values"], **instructions)
        by_image = model.model.get_modality_features("image", inputs["depth_values"], **instructions)
    torch.testing.assert_close(outputs.modality_features["depth"], by_depth.token_embeddings)
    assert not torch.allclose(by_image.token_embeddings, by_depth.token_embeddings)
    generated = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3
    assert not (generated[:, inputs["input_ids"].shape[1] :] == processor.placeholder_ids["depth"]).any()


def test_a_depth_config_saves_and_loads(depth_model, tmp_path):
    model, _ = depth_model
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["depth_interface_config"]["num_query_tokens"] == 4
    loaded = XLLMForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.config.modalities == ("image", "depth")
    torch.testing.assert_close(
        loaded.model.interfaces["depth"].query_tokens, model.model.interfaces["depth"].query_tokens
    )


def test_a_stage_two_step_trains_the_depth_interface_only(depth_model, tmp_path):
    model, processor = depth_model
    before = {name: p.clone() for name, p in model.named_parameters()}
    trainer = AlignmentTrainer(
        model,
        TrainingArguments(
            output_dir=str(tmp_path),
            max_steps=1,
            per_device_train_batch_size=2,
            learning_rate=1e-2,
            report_to="none",
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1,
        ),  # fmt: skip
        modalities=["depth"],
        train_dataset=[depth_example(0), depth_example(1, "a circle")],
        data_collator=XLLMDataCollator(processor),
    )
    trainer.train()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith("model.interfaces.depth.") for name in changed)
    assert np.isfinite(trainer.state.log_history[0]["loss"])


def test_depth_captioning_evaluates_from_a_manifest(depth_model, tmp_path):
    model, processor = depth_model
    rows = []
    for index in range(2):
        Image.fromarray(depth_map(index)).save(tmp_path / f"{index}.png")
        rows.append({"id": str(index), "depth_maps": f"{index}.png", "response": "a square"})
    (tmp_path / "depth.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    examples = list(load_manifest(tmp_path / "depth.jsonl"))

    def generate(prompts, generation):
        return generate_answers(model, processor, prompts, generation, progress=False)

    result = evaluate_examples(
        TASKS["captioning"], examples, generate, {"num_beams": 1, "max_new_tokens": 2, "min_new_tokens": 1}
    )
    assert len(result.predictions) == 2 and "cider" in result.metrics
