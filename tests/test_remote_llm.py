"""An LLM that needs `trust_remote_code` becomes the LLM part only through the explicit opt-in, and a composed
model with such an LLM reloads from its folder, whose code it carries, with the same opt-in."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_remote_code import LOAD_WITHOUT_XLLM
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    CLIPVisionModel,
)

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


def write_parts(folder: Path) -> Path:
    """A remote-code LLM (code files, config.json with `auto_map`, weights) and a CLIP vision encoder."""
    llm = folder / "llm"
    llm.mkdir(parents=True)
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


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return write_parts(tmp_path_factory.mktemp("remote_parts"))


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


# Greedy decoding of one image and a question, compared between the composed model and its reloaded folder.
LLM_CODE_FILES = {"configuration_tiny_remote_lm.py", "modeling_tiny_remote_lm.py"}


def image_question(model: XLLMForConditionalGeneration) -> dict[str, torch.Tensor]:
    image_token = model.config.image_token_id
    generator = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.tensor([[1] + [image_token] * 4 + [5, 9]]),  # 4 query tokens, then the question
        "pixel_values": torch.randn(1, 3, 32, 32, generator=generator),
        "qformer_input_ids": torch.tensor([[5, 9]]),
    }


def logits_and_greedy_tokens(model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        logits = model(**inputs).logits
        tokens = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    return logits, tokens


@pytest.fixture(scope="module")
def saved(parts, tmp_path_factory):
    """A composed model with the remote-code LLM, and the folder its `save_pretrained` wrote."""
    model = compose(parts, trust_remote_code=True)
    folder = tmp_path_factory.mktemp("composed") / "model"
    model.save_pretrained(folder)
    return model, folder


def test_save_pretrained_writes_the_llm_code_and_keeps_its_auto_map(saved):
    _, folder = saved
    assert LLM_CODE_FILES <= {path.name for path in folder.iterdir()}
    text_config = json.loads((folder / "config.json").read_text())["text_config"]
    assert text_config["auto_map"] == AUTO_MAP
    assert text_config["model_type"] == "xllm_test_remote_lm"


@pytest.mark.parametrize("trust_remote_code", [None, False])
@pytest.mark.parametrize("loader", [XLLMForConditionalGeneration, AutoModelForImageTextToText])
def test_folder_with_a_remote_code_llm_is_refused_without_trust_remote_code(saved, loader, trust_remote_code):
    _, folder = saved
    with pytest.raises(ValueError, match=r"runs its own code(.|\n)*trust_remote_code=True"):
        loader.from_pretrained(folder, trust_remote_code=trust_remote_code)


@pytest.mark.parametrize(
    "loader", [XLLMForConditionalGeneration, AutoModelForImageTextToText, AutoModelForMultimodalLM]
)
def test_folder_with_a_remote_code_llm_reloads_with_equal_logits_and_greedy_tokens(saved, loader):
    model, folder = saved
    reloaded = loader.from_pretrained(folder, trust_remote_code=True)
    assert type(reloaded) is XLLMForConditionalGeneration
    llm = reloaded.model.language_model
    assert type(llm).__name__ == "TinyRemoteModel"
    # The LLM's classes come from the saved folder's code, not from the LLM's own folder.
    assert (
        Path(sys.modules[type(llm).__module__].__file__).read_text()
        == (folder / "modeling_tiny_remote_lm.py").read_text()
    )
    assert type(llm) is not type(model.model.language_model)
    assert reloaded.config.text_config.name_or_path == str(folder)
    assert reloaded.trainable_parameter_report()["language_model"]["trainable"] == 0
    inputs = image_question(model)
    expected_logits, expected_tokens = logits_and_greedy_tokens(model, inputs)
    logits, tokens = logits_and_greedy_tokens(reloaded, inputs)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    assert torch.equal(tokens, expected_tokens)


# `LOAD_WITHOUT_XLLM`'s import guard, then the folder through `AutoModelForImageTextToText`.
RELOAD_COPY_WITHOUT_XLLM = LOAD_WITHOUT_XLLM.split("import numpy as np")[0] + textwrap.dedent(
    """
    import torch
    from transformers import AutoModelForImageTextToText

    folder, inputs_file, outputs_file = sys.argv[1:]
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    inputs = torch.load(inputs_file)
    with torch.no_grad():
        logits = model(**inputs).logits
        tokens = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    torch.save({"logits": logits, "tokens": tokens}, outputs_file)
    llm = type(model.model.language_model)
    print(json.dumps({
        "llm_class": llm.__name__,
        "llm_file": sys.modules[llm.__module__].__file__,
        "xllm_imported": any(name.split(".")[0] == "xllm" for name in sys.modules),
    }))
    """
)


def test_copy_of_the_folder_reloads_in_a_fresh_process_from_its_own_code(tmp_path):
    parts = write_parts(tmp_path / "parts")
    model = compose(parts, trust_remote_code=True)
    model.save_pretrained(tmp_path / "saved")
    inputs = image_question(model)
    expected_logits, expected_tokens = logits_and_greedy_tokens(model, inputs)
    scratch = tmp_path / "elsewhere"
    copy = shutil.copytree(tmp_path / "saved", scratch / "copy")
    # Neither the LLM's own folder nor the original save is there any more: the code must come from the copy.
    shutil.rmtree(parts)
    shutil.rmtree(tmp_path / "saved")
    torch.save(inputs, scratch / "inputs.pt")
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(scratch / "modules")}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            RELOAD_COPY_WITHOUT_XLLM,
            str(copy),
            str(scratch / "inputs.pt"),
            str(scratch / "outputs.pt"),
        ],
        cwd=scratch,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["llm_class"] == "TinyRemoteModel" and not report["xllm_imported"]
    llm_file = Path(report["llm_file"])
    assert llm_file.is_relative_to(scratch / "modules")
    assert llm_file.read_text() == (copy / "modeling_tiny_remote_lm.py").read_text()
    outputs = torch.load(scratch / "outputs.pt")
    torch.testing.assert_close(outputs["logits"], expected_logits, atol=1e-5, rtol=0)
    assert torch.equal(outputs["tokens"], expected_tokens)
