"""Convert a ULIP / ULIP-2 checkpoint's PointBERT encoder into an `XLLMPointBertModel` state dict.

ULIP saves `{"state_dict": ..., "args": argparse.Namespace, ...}`; the point encoder's weights sit
under `module.point_encoder.` (or `point_encoder.` without DistributedDataParallel). Everything
else (text and image towers, `pc_projection`) is left out. The file is read with
`torch.load(weights_only=True)`; `argparse.Namespace` is the one non-tensor class allowed.

Key mapping (ULIP `models/pointbert/point_encoder.py` -> ours), `i` the block index:

| ULIP key                                   | XLLMPointBertModel key                       |
| ------------------------------------------ | -------------------------------------------- |
| `encoder.first_conv.{0,1,3}.*`             | `token_embedder.first_mlp.{0,1,3}.*`         |
| `encoder.second_conv.{0,1,3}.*`            | `token_embedder.second_mlp.{0,1,3}.*`        |
| `reduce_dim.*`                             | `token_projection.*`                         |
| `cls_token`                                | `cls_token`                                  |
| `cls_pos`                                  | `cls_position`                               |
| `pos_embed.{0,2}.*`                        | `position_embedder.{0,2}.*`                  |
| `blocks.blocks.i.norm1.*`                  | `layers.i.attention_norm.*`                  |
| `blocks.blocks.i.attn.qkv.*`               | `layers.i.attention.qkv.*`                   |
| `blocks.blocks.i.attn.proj.*`              | `layers.i.attention.out_proj.*`              |
| `blocks.blocks.i.norm2.*`                  | `layers.i.mlp_norm.*`                        |
| `blocks.blocks.i.mlp.fc{1,2}.*`            | `layers.i.mlp.fc{1,2}.*`                     |
| `norm.*`                                   | `final_norm.*`                               |

The sizes are read from the tensor shapes; head count, group count and group size are not stored
in the checkpoint and come from the arguments (ULIP-2's values by default).
"""

import argparse
import pickle
import re
from pathlib import Path

import torch

from .configuration_pointbert import XLLMPointBertConfig

ULIP_TO_XLLM_KEYS = [
    (r"^encoder\.first_conv\.", "token_embedder.first_mlp."),
    (r"^encoder\.second_conv\.", "token_embedder.second_mlp."),
    (r"^reduce_dim\.", "token_projection."),
    (r"^cls_token$", "cls_token"),
    (r"^cls_pos$", "cls_position"),
    (r"^pos_embed\.", "position_embedder."),
    (r"^blocks\.blocks\.(\d+)\.norm1\.", r"layers.\1.attention_norm."),
    (r"^blocks\.blocks\.(\d+)\.attn\.qkv\.", r"layers.\1.attention.qkv."),
    (r"^blocks\.blocks\.(\d+)\.attn\.proj\.", r"layers.\1.attention.out_proj."),
    (r"^blocks\.blocks\.(\d+)\.norm2\.", r"layers.\1.mlp_norm."),
    (r"^blocks\.blocks\.(\d+)\.mlp\.", r"layers.\1.mlp."),
    (r"^norm\.", "final_norm."),
]


def load_weights_only(path: str | Path) -> dict:
    """torch.load with weights_only=True, turning a refused pickle into a ValueError that says why."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} holds pickled objects beyond tensors and plain containers; it is refused because "
            f"loading it could run code (torch.load weights_only=True said: {error})"
        ) from error


def rename_keys(
    state_dict: dict[str, torch.Tensor], rules: list[tuple[str, str | None]]
) -> dict[str, torch.Tensor]:
    """Apply the first matching (pattern, replacement) rule to every key.

    A replacement of None drops the key; a key that no rule matches is an error.
    """
    renamed, unknown = {}, []
    for key, tensor in state_dict.items():
        for pattern, replacement in rules:
            if re.search(pattern, key):
                if replacement is not None:
                    renamed[re.sub(pattern, replacement, key)] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"checkpoint has keys with no known mapping: {unknown}")
    return renamed


def extract_point_encoder(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The point encoder's tensors, with the `module.point_encoder.` prefix removed."""
    state_dict = checkpoint.get("state_dict", checkpoint.get("model", checkpoint))
    encoder = {}
    for key, tensor in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("point_encoder."):
            encoder[key.removeprefix("point_encoder.")] = tensor
    if not encoder:
        raise ValueError("checkpoint has no 'point_encoder.' (or 'module.point_encoder.') keys")
    return encoder


def config_from_shapes(
    state_dict: dict[str, torch.Tensor], num_attention_heads: int, num_groups: int, group_size: int
) -> XLLMPointBertConfig:
    """Read the sizes off the converted tensors."""
    num_layers = len({key.split(".")[1] for key in state_dict if key.startswith("layers.")})
    return XLLMPointBertConfig(
        in_channels=state_dict["token_embedder.first_mlp.0.weight"].shape[1],
        group_embedding_size=state_dict["token_projection.weight"].shape[1],
        position_embedding_size=state_dict["position_embedder.0.weight"].shape[0],
        hidden_size=state_dict["cls_token"].shape[-1],
        num_hidden_layers=num_layers,
        intermediate_size=state_dict["layers.0.mlp.fc1.weight"].shape[0],
        qkv_bias="layers.0.attention.qkv.bias" in state_dict,
        num_attention_heads=num_attention_heads,
        num_groups=num_groups,
        group_size=group_size,
    )


def convert_pointbert_checkpoint(
    path: str | Path, num_attention_heads: int = 6, num_groups: int = 512, group_size: int = 32
) -> tuple[XLLMPointBertConfig, dict[str, torch.Tensor]]:
    """Read a ULIP(-2) checkpoint and return our config and the renamed PointBERT state dict."""
    encoder = extract_point_encoder(load_weights_only(path))
    state_dict = rename_keys(encoder, ULIP_TO_XLLM_KEYS)
    return config_from_shapes(state_dict, num_attention_heads, num_groups, group_size), state_dict
