"""Saved checkpoints: Auto classes reload identical models and processors; attention backends agree."""

import pytest
import torch
from conftest import random_image
from transformers import AutoModelForImageTextToText, AutoModelForMultimodalLM, AutoProcessor

from xllm import XLLMForConditionalGeneration, XLLMProcessor

TEXTS = ["<image> what colour is the shape in the image ?", "describe it"]


@pytest.fixture(scope="module")
def inputs(tiny_processor):
    """A left-padded mixed batch, so that padding masks in the LLM and the Q-Former are exercised."""
    return tiny_processor(images=[random_image(0)], text=TEXTS)


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def test_checkpoint_is_saved_as_safetensors(saved_tiny_dir):
    assert (saved_tiny_dir / "model.safetensors").is_file()
    assert not list(saved_tiny_dir.glob("*.bin"))


@pytest.mark.parametrize("auto_class", [AutoModelForMultimodalLM, AutoModelForImageTextToText])
def test_auto_class_reload_gives_identical_logits(auto_class, tiny_model, saved_tiny_dir, inputs):
    reloaded = auto_class.from_pretrained(saved_tiny_dir).eval()
    assert isinstance(reloaded, XLLMForConditionalGeneration)
    assert torch.equal(logits(reloaded, inputs), logits(tiny_model, inputs))


@pytest.mark.parametrize("auto_class", [AutoModelForMultimodalLM, XLLMForConditionalGeneration])
def test_reloaded_model_keeps_encoders_and_llm_frozen(auto_class, saved_tiny_dir):
    report = auto_class.from_pretrained(saved_tiny_dir).trainable_parameter_report()
    assert report["language_model"]["trainable"] == report["encoders.vision"]["trainable"] == 0
    assert report["lm_head"]["trainable"] == 0
    assert report["interfaces.image"]["trainable"] == report["interfaces.image"]["total"] > 0


def test_auto_processor_reload_gives_identical_inputs(tiny_processor, saved_tiny_dir, inputs):
    reloaded = AutoProcessor.from_pretrained(saved_tiny_dir)
    assert isinstance(reloaded, XLLMProcessor)
    again = reloaded(images=[random_image(0)], text=TEXTS)
    assert again.keys() == inputs.keys()
    for name, value in inputs.items():
        assert torch.equal(again[name], value), name


def test_sdpa_and_eager_attention_agree(saved_tiny_dir, inputs):
    eager = AutoModelForMultimodalLM.from_pretrained(saved_tiny_dir, attn_implementation="eager").eval()
    sdpa = AutoModelForMultimodalLM.from_pretrained(saved_tiny_dir, attn_implementation="sdpa").eval()
    for model, implementation in ((eager, "eager"), (sdpa, "sdpa")):
        assert model.model.interfaces["image"].config._attn_implementation == implementation
        assert model.model.language_model.config._attn_implementation == implementation
    # Padding positions attend to nothing; each backend fills them differently and nothing reads them.
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(logits(eager, inputs)[real], logits(sdpa, inputs)[real], atol=1e-5, rtol=1e-5)
