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


# Image Q-Former trainable parameters: BERT-base Q-Former with word embeddings and text FFNs (185,659,392
# with BERT's 30522 words) + 32 queries (24,576) + ln_vision (2,816) + projection 768 -> 4096 (3,149,824).
# X-InstructBLIP's Q-Former vocabulary has LAVIS' `[DEC]` too (30523 words: 768 more parameters).
IMAGE_QFORMER_PARAMETERS = {"x-instructblip-7b": 188_836_608 + 768, "x-llm": 188_836_608}


@pytest.mark.parametrize("name", sorted(IMAGE_QFORMER_PARAMETERS))
def test_image_qformer_has_the_published_trainable_parameter_count(name):
    report = meta_model(name).trainable_parameter_report()
    trainable = {
        component: counts["trainable"] for component, counts in report.items() if counts["trainable"]
    }
    print(name, trainable)
    count = report["interfaces.image"]["trainable"]
    assert count == IMAGE_QFORMER_PARAMETERS[name]
    assert abs(count - PUBLISHED_IMAGE_QFORMER_PARAMETERS) / PUBLISHED_IMAGE_QFORMER_PARAMETERS < 0.01
    assert set(trainable) == {f"interfaces.{m}" for m in meta_model(name).config.modalities}


def test_x_instructblip_has_four_instruction_aware_interfaces_and_cues():
    config = preset_config("x-instructblip-13b")
    assert config.modalities == ("image", "video", "audio", "point_cloud")
    assert all(config.interface_config(m).instruction_aware for m in config.modalities)
    assert config.text_config.hidden_size == 5120 and config.modality_cues["point_cloud"] == "3d: "


def test_x_instructblip_has_lavis_shapes():
    """LAVIS' shapes (blip2_vicuna_xinstruct.py): Q-Former vocabulary 30523 (`[DEC]` added, line 2470),
    encoder widths 1408 (EVA ViT-g), 768 (BEATs) and 512 (ULIP-2 `pc_projection`: ONE 3D token over xyz)."""
    config = preset_config("x-instructblip-7b")
    assert {config.interface_config(m).vocab_size for m in config.modalities} == {30523}
    widths = {m: config.interface_config(m).encoder_hidden_size for m in config.modalities}
    assert widths == {"image": 1408, "video": 1408, "audio": 768, "point_cloud": 512}
    point_cloud = config.point_cloud_config
    assert (point_cloud.in_channels, point_cloud.output, point_cloud.projection_size) == (
        3,
        "ulip_embedding",
        512,
    )
    with torch.device("meta"):
        features = meta_model("x-instructblip-7b").model.encoders["point_cloud"](
            torch.empty(1, 8192, 3, device="meta"), output_hidden_states=True
        )
    assert features.last_hidden_state.shape == (1, 1, 512) and features.hidden_states[-1].shape == (1, 1, 512)


def test_x_instructblip_linear_has_lavis_linear_shapes():
    """LAVIS' linear ablation (`proj_dim: 768`): encoder width -> 32 x 768, then 768 -> 4096, no GELU."""
    interfaces = meta_model("x-instructblip-7b-linear").model.interfaces
    image = interfaces["image"]
    assert (image.config.kind, image.config.linear_variant) == ("linear", "lavis")
    assert tuple(image.expand.weight.shape) == (32 * 768, 1408) and tuple(image.adapter.weight.shape) == (
        4096,
        768,
    )
    assert tuple(interfaces["point_cloud"].expand.weight.shape) == (32 * 768, 512)
    assert isinstance(image.activation, torch.nn.Identity)


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
