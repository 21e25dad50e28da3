"""Convert a ULIP / ULIP-2 checkpoint's PointBERT encoder into an `XLLMPointBertModel` state dict.

ULIP saves `{"state_dict": ..., "args": argparse.Namespace, ...}`; the point encoder's weights sit
under `module.point_encoder.` (or `point_encoder.` without DistributedDataParallel), and ULIP's point
projection `pc_projection` (a `(2 * width, 512)` matrix, `ULIP_models.py:103`) beside it. With
`output="ulip_embedding"` (LAVIS X-InstructBLIP's 3D encoder, `ULIP_models.py:149-152`) that matrix
becomes `projection.weight` (transposed: ULIP computes `x @ P`); with `all_tokens` it is left out. The
text and image towers are always left out. The file is read with `torch.load(weights_only=True)`;
`argparse.Namespace` is the one non-tensor class allowed.

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
| `pc_projection` (beside `point_encoder.`)  | `projection.weight` = its transpose (`ulip_embedding`) |

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
    (r"^pc_projection$", "projection.weight"),
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


def extract_point_encoder(checkpoint: dict, with_projection: bool = False) -> dict[str, torch.Tensor]:
    """The point encoder's tensors, with the `module.point_encoder.` prefix removed; with
    `with_projection`, also ULIP's `pc_projection` (under that name)."""
    state_dict = checkpoint.get("state_dict", checkpoint.get("model", checkpoint))
    encoder = {}
    for key, tensor in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("point_encoder."):
            encoder[key.removeprefix("point_encoder.")] = tensor
        elif key == "pc_projection" and with_projection:
            encoder[key] = tensor
    if not any(key != "pc_projection" for key in encoder):
        raise ValueError("checkpoint has no 'point_encoder.' (or 'module.point_encoder.') keys")
    if with_projection and "pc_projection" not in encoder:
        raise ValueError(
            "output='ulip_embedding' needs ULIP's 'pc_projection' (or 'module.pc_projection'), which the "
            "checkpoint lacks; convert with output='all_tokens' for the encoder alone."
        )
    return encoder


def config_from_shapes(
    state_dict: dict[str, torch.Tensor], num_attention_heads: int, num_groups: int, group_size: int
) -> XLLMPointBertConfig:
    """Read the sizes off the converted tensors (a `projection.weight` makes it a `ulip_embedding` encoder)."""
    num_layers = len({key.split(".")[1] for key in state_dict if key.startswith("layers.")})
    hidden_size = state_dict["cls_token"].shape[-1]
    projection = state_dict.get("projection.weight")  # (projection_size, 2 * hidden)
    if projection is not None and projection.shape[1] != 2 * hidden_size:
        raise ValueError(
            f"pc_projection has shape {tuple(projection.T.shape)}; ULIP's is (2 * width, embedding) = "
            f"({2 * hidden_size}, ...) for this {hidden_size}-wide encoder."
        )
    return XLLMPointBertConfig(
        output="all_tokens" if projection is None else "ulip_embedding",
        projection_size=512 if projection is None else projection.shape[0],
        in_channels=state_dict["token_embedder.first_mlp.0.weight"].shape[1],
        group_embedding_size=state_dict["token_projection.weight"].shape[1],
        pointnet_width=state_dict["token_embedder.second_mlp.0.weight"].shape[0],
        position_embedding_size=state_dict["position_embedder.0.weight"].shape[0],
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        intermediate_size=state_dict["layers.0.mlp.fc1.weight"].shape[0],
        qkv_bias="layers.0.attention.qkv.bias" in state_dict,
        num_attention_heads=num_attention_heads,
        num_groups=num_groups,
        group_size=group_size,
    )


def convert_pointbert_checkpoint(
    path: str | Path,
    num_attention_heads: int = 6,
    num_groups: int = 512,
    group_size: int = 32,
    output: str = "all_tokens",
) -> tuple[XLLMPointBertConfig, dict[str, torch.Tensor]]:
    """Read a ULIP(-2) checkpoint and return our config and the renamed PointBERT state dict.

    `output="ulip_embedding"` also takes `pc_projection`: the encoder then hands on ULIP-2's one
    512-wide point embedding, which LAVIS' X-InstructBLIP 3D Q-Former reads."""
    if output not in ("all_tokens", "ulip_embedding"):
        raise ValueError(f"`output` must be 'all_tokens' or 'ulip_embedding', got {output!r}.")
    encoder = extract_point_encoder(load_weights_only(path), with_projection=output == "ulip_embedding")
    state_dict = rename_keys(encoder, ULIP_TO_XLLM_KEYS)
    if "projection.weight" in state_dict:
        state_dict["projection.weight"] = state_dict["projection.weight"].T.contiguous()
    return config_from_shapes(state_dict, num_attention_heads, num_groups, group_size), state_dict
