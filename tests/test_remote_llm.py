"""An LLM that needs `trust_remote_code` becomes the LLM part only through the explicit opt-in."""

import json
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, CLIPVisionModel

from xllm import XLLMForConditionalGeneration
from xllm.testing import tiny_interface_config, tiny_tokenizer, tiny_vision_config

# A causal LM of our own that transformers does not know: its code travels in the checkpoint folder.
REMOTE_CONFIGURATION = """
from transformers import LlamaConfig


class TinyRemoteConfig(LlamaConfig):
    model_type = "xllm_test_remote_lm"
"""
REMOTE_MODELING = """
from transformers import LlamaForCausalLM, LlamaModel

from .configuration_tiny_remote_lm import TinyRemoteConfig


class TinyRemoteModel(LlamaModel):
    config_class = TinyRemoteConfig


class TinyRemoteForCausalLM(LlamaForCausalLM):
    config_class = TinyRemoteConfig

    def __init__(self, config):
        super().__init__(config)
        self.model = TinyRemoteModel(config)
        self.post_init()
"""
AUTO_MAP = {
    "AutoConfig": "configuration_tiny_remote_lm.TinyRemoteConfig",
    "AutoModel": "modeling_tiny_remote_lm.TinyRemoteModel",
    "AutoModelForCausalLM": "modeling_tiny_remote_lm.TinyRemoteForCausalLM",
}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A remote-code LLM (code files, config.json with `auto_map`, weights) and a CLIP vision encoder."""
    folder = tmp_path_factory.mktemp("remote_parts")
    llm = folder / "llm"
    llm.mkdir()
    (llm / "configuration_tiny_remote_lm.py").write_text(textwrap.dedent(REMOTE_CONFIGURATION))
    (llm / "modeling_tiny_remote_lm.py").write_text(textwrap.dedent(REMOTE_MODELING))
    config = dict(
        model_type="xllm_test_remote_lm",
        auto_map=AUTO_MAP,
        vocab_size=len(tiny_tokenizer()),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    (llm / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    remote_config = AutoConfig.from_pretrained(llm, trust_remote_code=True)
    AutoModelForCausalLM.from_config(remote_config, trust_remote_code=True).save_pretrained(llm)
    CLIPVisionModel(tiny_vision_config()).save_pretrained(folder / "vision")
    return folder


def compose(parts, **kwargs) -> XLLMForConditionalGeneration:
    interfaces = {"image": tiny_interface_config()}
    return XLLMForConditionalGeneration.from_pretrained_parts(
        parts / "llm", {"vision": parts / "vision"}, interfaces, tokenizer=tiny_tokenizer(), **kwargs
    )


def test_remote_code_llm_is_refused_without_the_opt_in(parts):
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        compose(parts)


def test_remote_code_llm_is_the_llm_part_with_the_opt_in(parts):
    model = compose(parts, trust_remote_code=True)
    llm = AutoModelForCausalLM.from_pretrained(parts / "llm", trust_remote_code=True)
    assert type(model.model.language_model).__name__ == "TinyRemoteModel"
    assert type(model.model.language_model).__module__.startswith("transformers_modules.")
    text = torch.tensor([[5, 9, 12, 20]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=text).logits, llm(text).logits, atol=1e-5, rtol=0)
    assert model.trainable_parameter_report()["language_model"]["trainable"] == 0


def test_model_with_a_remote_code_llm_answers_about_an_image(parts):
    model = compose(parts, trust_remote_code=True).eval()
    image_token = model.config.image_token_id
    input_ids = torch.tensor([[1] + [image_token] * 4 + [5, 9]])  # 4 query tokens, then the question
    generated = model.generate(
        input_ids=input_ids,
        pixel_values=torch.randn(1, 3, 32, 32),
        qformer_input_ids=torch.tensor([[5, 9]]),
        max_new_tokens=3,
        min_new_tokens=3,
        do_sample=False,
    )
    assert generated.shape == (1, input_ids.shape[1] + 3)
