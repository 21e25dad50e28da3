import argparse

import pytest
import torch

from xllm.modeling_xllm.convert_pointbert import convert_pointbert_checkpoint
from xllm.modeling_xllm.modeling_pointbert import XLLMPointBertModel, farthest_point_sample, group_points
from xllm.testing import tiny_point_cloud_config


def tiny_model(**overrides) -> XLLMPointBertModel:
    torch.manual_seed(0)
    return XLLMPointBertModel(tiny_point_cloud_config(**overrides)).eval()


def test_all_tokens_are_returned_cls_first():
    model = tiny_model()
    output = model(torch.randn(2, 100, 3), output_hidden_states=True)
    assert output.last_hidden_state.shape == (2, 1 + 16, 32)
    assert len(output.hidden_states) == 1 + 2


def test_colour_channels_are_accepted_when_configured():
    model = tiny_model(in_channels=6)
    assert model(torch.rand(1, 64, 6)).last_hidden_state.shape == (1, 17, 32)


def test_wrong_channel_count_names_the_shape():
    with pytest.raises(ValueError, match=r"\(batch, points, 3\).*\(1, 64, 6\)"):
        tiny_model()(torch.rand(1, 64, 6))


def test_too_few_points_for_the_groups_is_rejected():
    with pytest.raises(ValueError, match="at least 16 points"):
        tiny_model()(torch.rand(1, 10, 3))


def test_farthest_point_sampling_spreads_over_the_cloud():
    corners = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    cloud = torch.cat([corners, 0.01 * torch.rand(50, 3)]).unsqueeze(0)  # corners plus a clump at the origin
    chosen = farthest_point_sample(cloud, 4)[0]
    assert chosen[0] == 0
    assert set(chosen.tolist()) == {0, 1, 2, 3}


def test_groups_are_nearest_neighbours_relative_to_their_centre():
    torch.manual_seed(0)
    cloud = torch.rand(1, 60, 3)
    groups, centres = group_points(cloud, num_groups=5, group_size=4)
    assert groups.shape == (1, 5, 4, 3) and centres.shape == (1, 5, 3)
    distances = torch.cdist(centres[0], cloud[0])  # (groups, points)
    expected = distances.topk(4, largest=False).values
    torch.testing.assert_close(groups[0].norm(dim=-1), expected, atol=1e-5, rtol=1e-5)


def test_eager_and_sdpa_attention_agree():
    model = tiny_model()
    cloud = torch.randn(2, 80, 3)
    model.set_attn_implementation("sdpa")
    sdpa = model(cloud).last_hidden_state
    model.set_attn_implementation("eager")
    eager = model(cloud).last_hidden_state
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=1e-5)


def test_save_and_from_pretrained_give_equal_outputs(tmp_path):
    model = tiny_model(in_channels=6)
    cloud = torch.rand(2, 70, 6)
    model.save_pretrained(tmp_path)
    reloaded = XLLMPointBertModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(cloud).last_hidden_state, model(cloud).last_hidden_state)


def ulip_point_encoder_state_dict(
    in_channels: int, width: int, depth: int, pointnet_width: int = 512
) -> dict[str, torch.Tensor]:
    """Random tensors under the key names and shapes of ULIP's PointTransformer (PointNet 512 wide by default)."""
    shapes = {"cls_token": (1, 1, width), "cls_pos": (1, 1, width)}
    for name, (inp, hidden, out) in {
        "first_conv": (in_channels, 128, pointnet_width // 2),
        "second_conv": (pointnet_width, pointnet_width, 48),
    }.items():
        shapes |= {f"encoder.{name}.0.weight": (hidden, inp, 1), f"encoder.{name}.0.bias": (hidden,)}
        shapes |= {
            f"encoder.{name}.1.{p}": (hidden,) for p in ("weight", "bias", "running_mean", "running_var")
        }
        shapes |= {f"encoder.{name}.3.weight": (out, hidden, 1), f"encoder.{name}.3.bias": (out,)}
    shapes |= {"reduce_dim.weight": (width, 48), "reduce_dim.bias": (width,)}
    shapes |= {"pos_embed.0.weight": (16, 3), "pos_embed.0.bias": (16,)}
    shapes |= {"pos_embed.2.weight": (width, 16), "pos_embed.2.bias": (width,)}
    for i in range(depth):
        block = f"blocks.blocks.{i}"
        shapes |= {f"{block}.{norm}.{p}": (width,) for norm in ("norm1", "norm2") for p in ("weight", "bias")}
        shapes |= {f"{block}.attn.qkv.weight": (3 * width, width)}
        shapes |= {f"{block}.attn.proj.weight": (width, width), f"{block}.attn.proj.bias": (width,)}
        shapes |= {f"{block}.mlp.fc1.weight": (64, width), f"{block}.mlp.fc1.bias": (64,)}
        shapes |= {f"{block}.mlp.fc2.weight": (width, 64), f"{block}.mlp.fc2.bias": (width,)}
    shapes |= {"norm.weight": (width,), "norm.bias": (width,)}
    state_dict = {key: torch.randn(shape) for key, shape in shapes.items()}
    state_dict |= {
        f"encoder.{name}.1.num_batches_tracked": torch.tensor(7) for name in ("first_conv", "second_conv")
    }
    return state_dict


def test_ulip2_checkpoint_converts_into_a_model_without_missing_or_unexpected_keys(tmp_path):
    encoder = ulip_point_encoder_state_dict(in_channels=6, width=32, depth=2)
    state_dict = {f"module.point_encoder.{key}": tensor for key, tensor in encoder.items()}
    state_dict["module.pc_projection"] = torch.randn(32, 16)
    path = tmp_path / "ulip2.pt"
    torch.save(
        {"epoch": 3, "state_dict": state_dict, "args": argparse.Namespace(model="ULIP2_PointBERT")}, path
    )

    config, converted = convert_pointbert_checkpoint(path, num_attention_heads=2, num_groups=16, group_size=8)
    assert (config.in_channels, config.hidden_size, config.num_hidden_layers) == (6, 32, 2)
    assert config.qkv_bias is False
    assert config.pointnet_width == 512
    model = XLLMPointBertModel(config)
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(model.cls_position, encoder["cls_pos"])
    torch.testing.assert_close(
        model.layers[1].attention.out_proj.weight, encoder["blocks.blocks.1.attn.proj.weight"]
    )
    assert model(torch.rand(1, 40, 6)).last_hidden_state.shape == (1, 17, 32)


def test_default_token_embedder_has_ulip2s_pointnet_widths():
    embedder = XLLMPointBertModel(tiny_point_cloud_config()).token_embedder
    # ULIP-2's PointBERT Encoder: first_conv 3-128-256, second_conv 512-512-encoder_channel
    # (LAVIS lavis/models/ulip_models/pointbert/dvae.py:177-192, class Encoder).
    assert [embedder.first_mlp[0].out_channels, embedder.first_mlp[3].out_channels] == [128, 256]
    assert [embedder.second_mlp[0].in_channels, embedder.second_mlp[0].out_channels] == [512, 512]


def test_pointnet_width_sizes_both_per_point_mlps_and_survives_a_save(tmp_path):
    model = tiny_model(pointnet_width=64)
    embedder = model.token_embedder
    assert embedder.first_mlp[3].out_channels == 32
    assert [embedder.second_mlp[0].in_channels, embedder.second_mlp[0].out_channels] == [64, 64]
    cloud = torch.rand(2, 40, 3)
    model.save_pretrained(tmp_path)
    reloaded = XLLMPointBertModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.pointnet_width == 64
    torch.testing.assert_close(reloaded(cloud).last_hidden_state, model(cloud).last_hidden_state)


@pytest.mark.parametrize("width", [0, 33])
def test_odd_or_empty_pointnet_width_is_refused_with_its_value(width):
    with pytest.raises(ValueError, match=f"pointnet_width must be an even number.*got {width}"):
        tiny_point_cloud_config(pointnet_width=width)


def test_narrow_pointnet_checkpoint_converts_with_its_width(tmp_path):
    encoder = ulip_point_encoder_state_dict(in_channels=3, width=32, depth=1, pointnet_width=128)
    path = tmp_path / "narrow.pt"
    torch.save({"state_dict": {f"module.point_encoder.{k}": v for k, v in encoder.items()}}, path)
    config, converted = convert_pointbert_checkpoint(path, num_attention_heads=2, num_groups=16, group_size=8)
    assert config.pointnet_width == 128
    result = XLLMPointBertModel(config).load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


class CodeRunningObject:
    pass


def test_checkpoint_with_arbitrary_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"state_dict": {}, "payload": CodeRunningObject()}, path)
    with pytest.raises(ValueError, match="could run code"):
        convert_pointbert_checkpoint(path)
