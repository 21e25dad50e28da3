import pytest
import torch

from xllm.modeling_xllm.configuration_beats import XLLMBeatsConfig
from xllm.modeling_xllm.convert_beats import convert_beats_checkpoint
from xllm.modeling_xllm.modeling_beats import XLLMBeatsModel

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    patch_embedding_size=24,
    conv_pos_kernel_size=8,
    conv_pos_groups=4,
    num_buckets=16,
    max_distance=40,
)

# The public cfg of a tiny BEATs, with the field names of microsoft/unilm's BEATsConfig.
TINY_BEATS_CFG = {
    "input_patch_size": 16,
    "embed_dim": 24,
    "conv_bias": False,
    "encoder_layers": 2,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 4,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "deep_norm": True,
    "conv_pos": 8,
    "conv_pos_groups": 4,
    "relative_position_embedding": True,
    "num_buckets": 16,
    "max_distance": 40,
    "gru_rel_pos": True,
    "finetuned_model": False,
}


def tiny_model() -> XLLMBeatsModel:
    torch.manual_seed(0)
    return XLLMBeatsModel(XLLMBeatsConfig(**TINY)).eval()


def test_patches_are_16_frames_by_16_bins():
    output = tiny_model()(torch.randn(2, 100, 128), output_hidden_states=True)
    assert output.last_hidden_state.shape == (2, (100 // 16) * (128 // 16), 32)
    assert len(output.hidden_states) == 1 + 2


def test_published_iter3_sizes_give_about_90m_parameters():
    with torch.device("meta"):
        model = XLLMBeatsModel(XLLMBeatsConfig())
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 90.3) < 0.5


def test_padded_frames_do_not_change_the_real_patches():
    model = tiny_model()
    features = torch.randn(2, 100, 128)
    attention_mask = torch.ones(2, 100, dtype=torch.long)
    attention_mask[1, 50:] = 0  # frames 48-49 are real, so time step 3 (frames 48-63) stays
    padded = model(features, attention_mask=attention_mask).last_hidden_state
    alone = model(features[1:, :64]).last_hidden_state
    torch.testing.assert_close(padded[1, :32], alone[0], atol=1e-5, rtol=1e-5)


def test_eager_and_sdpa_attention_agree():
    model = tiny_model()
    features = torch.randn(2, 64, 128)
    model.set_attn_implementation("sdpa")
    sdpa = model(features).last_hidden_state
    model.set_attn_implementation("eager")
    eager = model(features).last_hidden_state
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=1e-5)


def test_save_and_from_pretrained_give_equal_outputs(tmp_path):
    model = tiny_model()
    features = torch.randn(1, 48, 128)
    model.save_pretrained(tmp_path)
    reloaded = XLLMBeatsModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(features).last_hidden_state, model(features).last_hidden_state)


def test_wrong_mel_bins_name_the_shape():
    with pytest.raises(ValueError, match=r"\(batch, frames, 128\), got \(1, 50, 80\)"):
        tiny_model()(torch.randn(1, 50, 80))


def public_beats_state_dict(cfg: dict) -> dict[str, torch.Tensor]:
    """Random tensors under the key names and shapes of microsoft/unilm's BEATs module."""
    width, patch_width, ffn, heads = (
        cfg[k] for k in ("encoder_embed_dim", "embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads")
    )
    patch, kernel, groups = cfg["input_patch_size"], cfg["conv_pos"], cfg["conv_pos_groups"]
    shapes = {
        "patch_embedding.weight": (patch_width, 1, patch, patch),
        "layer_norm.weight": (patch_width,),
        "layer_norm.bias": (patch_width,),
        "post_extract_proj.weight": (width, patch_width),
        "post_extract_proj.bias": (width,),
        "encoder.pos_conv.0.bias": (width,),
        "encoder.pos_conv.0.weight_g": (1, 1, kernel),
        "encoder.pos_conv.0.weight_v": (width, width // groups, kernel),
        "encoder.layer_norm.weight": (width,),
        "encoder.layer_norm.bias": (width,),
    }
    for i in range(cfg["encoder_layers"]):
        layer = f"encoder.layers.{i}"
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes |= {
                f"{layer}.self_attn.{projection}.weight": (width, width),
                f"{layer}.self_attn.{projection}.bias": (width,),
            }
        shapes |= {
            f"{layer}.self_attn.relative_attention_bias.weight": (cfg["num_buckets"], heads),
            f"{layer}.self_attn.grep_linear.weight": (8, width // heads),
            f"{layer}.self_attn.grep_linear.bias": (8,),
            f"{layer}.self_attn.grep_a": (1, heads, 1, 1),
            f"{layer}.fc1.weight": (ffn, width),
            f"{layer}.fc1.bias": (ffn,),
            f"{layer}.fc2.weight": (width, ffn),
            f"{layer}.fc2.bias": (width,),
        }
        shapes |= {
            f"{layer}.{norm}.{p}": (width,)
            for norm in ("self_attn_layer_norm", "final_layer_norm")
            for p in ("weight", "bias")
        }
    state_dict = {key: torch.randn(shape) for key, shape in shapes.items()}
    shared_table = state_dict["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    for i in range(1, cfg["encoder_layers"]):  # BEATs shares layer 0's table, and saves every copy
        state_dict[f"encoder.layers.{i}.self_attn.relative_attention_bias.weight"] = shared_table
    return state_dict


def test_public_checkpoint_converts_without_missing_or_unexpected_keys(tmp_path):
    public = public_beats_state_dict(TINY_BEATS_CFG)
    path = tmp_path / "BEATs_tiny.pt"
    torch.save({"cfg": TINY_BEATS_CFG, "model": public}, path)

    config, state_dict = convert_beats_checkpoint(path)
    assert (config.hidden_size, config.num_hidden_layers, config.patch_embedding_size) == (32, 2, 24)
    assert config.deep_norm and config.max_distance == 40
    model = XLLMBeatsModel(config).eval()
    result = model.load_state_dict(state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(
        model.encoder.relative_attention_bias.weight,
        public["encoder.layers.0.self_attn.relative_attention_bias.weight"],
    )
    weight_v = public["encoder.pos_conv.0.weight_v"]
    expected_conv = weight_v * public["encoder.pos_conv.0.weight_g"] / weight_v.norm(dim=(0, 1), keepdim=True)
    torch.testing.assert_close(model.encoder.pos_conv.conv.weight, expected_conv)
    assert torch.isfinite(model(torch.randn(1, 32, 128)).last_hidden_state).all()


def test_pre_norm_beats_checkpoints_are_refused(tmp_path):
    path = tmp_path / "prenorm.pt"
    torch.save({"cfg": {**TINY_BEATS_CFG, "layer_norm_first": True}, "model": {}}, path)
    with pytest.raises(ValueError, match="layer_norm_first=True is not supported"):
        convert_beats_checkpoint(path)


class CodeRunningObject:
    pass


def test_checkpoint_with_arbitrary_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"cfg": TINY_BEATS_CFG, "model": {}, "payload": CodeRunningObject()}, path)
    with pytest.raises(ValueError, match="could run code"):
        convert_beats_checkpoint(path)
