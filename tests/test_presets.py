"""Presets build the published architectures; counted on the meta device (no memory, no weights)."""

import pytest
import torch

from xllm import XLLMForConditionalGeneration
from xllm.modeling_xllm.configuration_presets import PRESETS, preset_config

# X-InstructBLIP (arXiv 2311.18799): about 188M trainable parameters per Q-Former with ViT-g (width 1408).
PUBLISHED_IMAGE_QFORMER_PARAMETERS = 188e6


def meta_model(name: str) -> XLLMForConditionalGeneration:
    with torch.device("meta"):
        return XLLMForConditionalGeneration(preset_config(name))


@pytest.mark.parametrize("name", ["x-instructblip-7b", "x-llm"])
def test_image_qformer_has_the_published_trainable_parameter_count(name):
    report = meta_model(name).trainable_parameter_report()
    trainable = {
        component: counts["trainable"] for component, counts in report.items() if counts["trainable"]
    }
    print(name, trainable)
    count = report["interfaces.image"]["trainable"]
    # Q-Former with word embeddings and text FFNs (185,659,392) + 32 queries (24,576) + ln_vision (2,816)
    # + projection 768 -> 4096 (3,149,824), as LAVIS counts it.
    assert count == 188_836_608
    assert abs(count - PUBLISHED_IMAGE_QFORMER_PARAMETERS) / PUBLISHED_IMAGE_QFORMER_PARAMETERS < 0.01
    assert set(trainable) == {f"interfaces.{m}" for m in meta_model(name).config.modalities}


def test_x_instructblip_has_four_instruction_aware_interfaces_and_cues():
    config = preset_config("x-instructblip-13b")
    assert config.modalities == ("image", "video", "audio", "point_cloud")
    assert all(config.interface_config(m).instruction_aware for m in config.modalities)
    assert config.text_config.hidden_size == 5120 and config.modality_cues["point_cloud"] == "3d: "


def test_x_llm_llm_has_chatglm_6b_size():
    config = preset_config("x-llm")
    report = meta_model("x-llm").trainable_parameter_report()
    llm_parameters = report["language_model"]["total"]  # layers + embeddings, as ChatGLM-6B's "6.2B"
    print("x-llm LLM parameters (without the LM head)", llm_parameters)
    assert abs(llm_parameters - 6.2e9) / 6.2e9 < 0.02
    assert config.modalities == ("image", "video", "speech") and config.modality_cues is None
    assert not config.image_interface_config.instruction_aware
    assert config.speech_interface_config.kind == "cformer"


def test_every_preset_builds_and_unknown_names_are_refused():
    for name in PRESETS:
        assert preset_config(name).text_config.vocab_size > preset_config(name).point_cloud_token_id
    with pytest.raises(ValueError, match="x-instructblip-7b"):
        preset_config("x-instructblip-70b")
