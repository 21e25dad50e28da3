"""Composing a model from separately pretrained checkpoints, the way real users start."""

import pytest
import torch
from transformers import AutoModelForCausalLM, CLIPConfig, CLIPModel, CLIPVisionModel

from xllm import XLLMForConditionalGeneration
from xllm.testing import tiny_interface_config, tiny_text_config, tiny_tokenizer, tiny_vision_config


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parts")
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    text_config = tiny_text_config(
        "llama", vocab_size=len(tokenizer) - 5
    )  # the LLM predates the placeholders
    AutoModelForCausalLM.from_config(text_config).save_pretrained(folder / "llm")
    CLIPVisionModel(tiny_vision_config()).save_pretrained(folder / "vision")
    clip = CLIPConfig(
        vision_config=tiny_vision_config().to_dict(),
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64),
    )
    CLIPModel(clip).save_pretrained(folder / "clip")
    return folder


def compose(parts, vision="vision", **kwargs):
    interfaces = {"image": tiny_interface_config(), "video": tiny_interface_config()}
    return XLLMForConditionalGeneration.from_pretrained_parts(
        parts / "llm", {"vision": parts / vision}, interfaces, tokenizer=tiny_tokenizer(), **kwargs
    )


def test_composed_model_keeps_the_pretrained_llm_and_encoder_weights(parts):
    model = compose(parts)
    llm = AutoModelForCausalLM.from_pretrained(parts / "llm")
    vision = CLIPVisionModel.from_pretrained(parts / "vision")
    text = torch.tensor([[5, 9, 12, 20]])
    torch.testing.assert_close(model(input_ids=text).logits[..., : llm.config.vocab_size], llm(text).logits)
    for name, value in vision.state_dict().items():
        assert torch.equal(model.model.encoders["vision"].state_dict()[name], value), name
    assert model.config.text_config.vocab_size >= model.config.video_token_id + 1
    report = model.trainable_parameter_report()
    assert report["language_model"]["trainable"] == 0 and report["encoders.vision"]["trainable"] == 0
    assert report["interfaces.image"]["trainable"] == report["interfaces.image"]["total"] > 0


def test_composite_clip_checkpoint_gives_its_vision_tower(parts):
    model = compose(parts, vision="clip")
    clip = CLIPModel.from_pretrained(parts / "clip")
    for name, value in clip.vision_model.state_dict().items():
        assert torch.equal(model.model.encoders["vision"].state_dict()[name], value), name


def test_half_precision_keeps_queries_and_layer_norms_in_fp32(parts):
    model = compose(parts, dtype=torch.bfloat16, device_map="auto")
    interface = model.model.interfaces["image"]
    assert interface.query_tokens.dtype == torch.float32
    assert interface.encoder_layer_norm.weight.dtype == torch.float32
    assert interface.qformer.embedding_layer_norm.weight.dtype == torch.float32
    assert interface.adapter.weight.dtype == torch.bfloat16
    assert model.model.language_model.get_input_embeddings().weight.dtype == torch.bfloat16
    pixel_values = torch.randn(1, 3, 32, 32)
    qformer_ids = torch.tensor([[5, 6]])
    features = model.model.get_image_features(pixel_values.to(torch.bfloat16), qformer_ids).pooler_output
    assert features.dtype == torch.bfloat16 and torch.isfinite(features.float()).all()
