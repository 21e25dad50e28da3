"""TRL's SFTTrainer path: the model's own loss (spliced speech labels), image and speech data."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_trainers import training_args
from trl import SFTConfig

from xllm.manifests import load_manifest
from xllm.testing import tiny_model_and_processor
from xllm.trainers.data import XLLMDataCollator
from xllm.trainers.stage3_instruction_tuning import InstructionTuningTrainer
from xllm.trainers.stage3_trl import XLLMSFTTrainer


def write_image_and_speech_manifest(folder):
    """Coloured squares and short tone bursts, each with a one-turn chat."""
    from scipy.io import wavfile

    (folder / "media").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (name, rgb) in enumerate({"red": (255, 0, 0), "blue": (0, 0, 255)}.items()):
        Image.new("RGB", (32, 32), rgb).save(folder / "media" / f"{name}.png")
        tone = 0.3 * np.sin(2 * np.pi * (300 + 300 * index) * np.arange(8000) / 16000)
        wavfile.write(folder / "media" / f"{name}.wav", 16000, tone.astype(np.float32))
        for kind, column, file in (("image", "images", f"{name}.png"), ("speech", "speech", f"{name}.wav")):
            user = [{"type": kind}, {"type": "text", "text": "what colour is it ?"}]
            rows.append(
                {
                    column: f"media/{file}",
                    "messages": [
                        {"role": "user", "content": user},
                        {"role": "assistant", "content": [{"type": "text", "text": f"it is {name}"}]},
                    ],
                }
            )
    path = folder / "chat.jsonl"
    path.write_text("\n".join(json.dumps({"images": None, "speech": None, **row}) for row in rows))
    return path


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_image_and_speech_manifest(tmp_path_factory.mktemp("trl"))


def sft_config(output_dir, **overrides) -> SFTConfig:
    # bf16=False is SFTConfig's default; fp32 keeps the comparison exact.
    return training_args(output_dir, SFTConfig, learning_rate=1e-2, max_steps=6, bf16=False, **overrides)


def steerable_tiny_model():
    model, processor = tiny_model_and_processor()
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)
    return model, processor


def test_sft_trainer_loss_on_image_and_speech_batch_equals_the_stage_trainer_loss(manifest, tmp_path):
    model, processor = steerable_tiny_model()
    dataset = load_manifest(manifest)
    collator = XLLMDataCollator(processor)
    batch = collator([dataset[i] for i in range(4)])
    assert "pixel_values" in batch and "speech_features" in batch
    sft = XLLMSFTTrainer(
        model,
        sft_config(tmp_path / "sft"),
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
    )
    ours = InstructionTuningTrainer(
        model,
        args=sft_config(tmp_path / "ours"),
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
    )
    model.eval()
    with torch.no_grad():
        sft_loss = sft.compute_loss(model, dict(batch))
        our_loss = ours.compute_loss(model, dict(batch))
        outputs = model(**batch)
    torch.testing.assert_close(sft_loss, our_loss, atol=1e-6, rtol=1e-6)
    assert outputs.labels.shape[1] > batch["labels"].shape[1]  # speech was spliced in: labels lengthened
    torch.testing.assert_close(sft_loss, outputs.loss, atol=1e-6, rtol=1e-6)


def test_sft_trainer_trains_only_the_interfaces_and_its_loss_drops(manifest, tmp_path):
    model, processor = steerable_tiny_model()
    trainer = XLLMSFTTrainer(
        model,
        sft_config(tmp_path),
        train_dataset=load_manifest(manifest),
        data_collator=XLLMDataCollator(processor),
        processing_class=processor,
    )
    trainable = {name.split(".")[1] for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable == {"interfaces"}
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert np.mean([e["loss"] for e in logged[-2:]]) < 0.85 * logged[0]["loss"]
    assert "loss_lm" in logged[0] and "mean_token_accuracy" in logged[0]
    assert all(torch.equal(frozen[name], p) for name, p in model.named_parameters() if name in frozen)
