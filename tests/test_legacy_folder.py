"""A folder saved by an earlier version (tests/fixtures/saved-by-877d8f3, written by
scripts/write_legacy_fixture.py with that commit's code) loads with today's code and computes the same."""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMultimodalLM, AutoProcessor

import xllm  # noqa: F401

FIXTURE = Path(__file__).parent / "fixtures" / "saved-by-877d8f3"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from write_legacy_fixture import GENERATED_TOKENS, reference_media  # noqa: E402


@pytest.fixture(scope="module")
def legacy():
    model = AutoModelForMultimodalLM.from_pretrained(FIXTURE).eval()
    processor = AutoProcessor.from_pretrained(FIXTURE)
    reference = load_file(FIXTURE / "reference.safetensors")
    texts = json.loads((FIXTURE / "reference.json").read_text())["texts"]
    return model, processor, reference, texts


def test_the_legacy_config_builds_every_modality(legacy):
    model, _, _, _ = legacy
    assert model.config.modalities == ("image", "video", "speech", "audio", "point_cloud")
    assert sorted(model.model.encoders) == ["audio", "point_cloud", "speech", "vision"]


def test_todays_processor_gives_the_saved_inputs(legacy):
    _, processor, reference, texts = legacy
    inputs = processor(text=texts, **reference_media())
    saved = {
        name.removeprefix("input."): value for name, value in reference.items() if name.startswith("input.")
    }
    assert set(inputs) == set(saved)
    for name, value in saved.items():
        torch.testing.assert_close(inputs[name], value, atol=0, rtol=0, msg=name)


def test_todays_model_gives_the_saved_logits_and_greedy_tokens(legacy):
    model, _, reference, _ = legacy
    inputs = {
        name.removeprefix("input."): value for name, value in reference.items() if name.startswith("input.")
    }
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(
            **inputs, do_sample=False, max_new_tokens=GENERATED_TOKENS, min_new_tokens=GENERATED_TOKENS
        )
    torch.testing.assert_close(logits, reference["logits"], atol=1e-5, rtol=1e-5)
    assert torch.equal(generated[:, inputs["input_ids"].shape[1] :], reference["generated"])
