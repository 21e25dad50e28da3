"""Convert a public BEATs checkpoint (`{"cfg": dict, "model": state_dict}`) into `XLLMBeatsModel` form.

The file is read with `torch.load(weights_only=True)`; a file holding pickled objects that could
run code is refused with a ValueError. Published BEATs use post-norm layers with a gated relative
position bias; checkpoints configured otherwise (`layer_norm_first`, no relative position
embedding, no gate) are refused rather than converted into a model that computes something else.

Key mapping (microsoft/unilm `beats/BEATs.py` and `backbone.py` -> ours), `i` the layer index:

| BEATs key                                              | XLLMBeatsModel key                                          |
| ------------------------------------------------------ | ----------------------------------------------------------- |
| `patch_embedding.*`, `layer_norm.*`, `post_extract_proj.*` | unchanged                                               |
| `encoder.pos_conv.0.weight_g`                          | `encoder.pos_conv.conv.parametrizations.weight.original0`   |
| `encoder.pos_conv.0.weight_v`                          | `encoder.pos_conv.conv.parametrizations.weight.original1`   |
| `encoder.pos_conv.0.bias`                              | `encoder.pos_conv.conv.bias`                                |
| `encoder.layer_norm.*`                                 | unchanged                                                   |
| `encoder.layers.0.self_attn.relative_attention_bias.weight` | `encoder.relative_attention_bias.weight`               |
| `encoder.layers.i.self_attn.relative_attention_bias.weight`, i > 0 | dropped (copies of layer 0's shared table)      |
| `encoder.layers.i.self_attn.{q,k,v,out}_proj.*`        | unchanged                                                   |
| `encoder.layers.i.self_attn.grep_linear.*`, `grep_a`   | unchanged                                                   |
| `encoder.layers.i.{self_attn_layer_norm,fc1,fc2,final_layer_norm}.*` | unchanged                                     |
| `predictor.*` (fine-tuned AudioSet heads)              | dropped (this is the encoder only)                          |

When the patch width equals the model width BEATs has no `post_extract_proj`; the converter
then writes an identity projection.
"""

from pathlib import Path

import torch

from .configuration_beats import XLLMBeatsConfig
from .convert_pointbert import load_weights_only, rename_keys

BEATS_TO_XLLM_KEYS = [
    (r"^encoder\.pos_conv\.0\.weight_g$", "encoder.pos_conv.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.weight_v$", "encoder.pos_conv.conv.parametrizations.weight.original1"),
    (r"^encoder\.pos_conv\.0\.bias$", "encoder.pos_conv.conv.bias"),
    (r"^encoder\.layers\.0\.self_attn\.relative_attention_bias\.", "encoder.relative_attention_bias."),
    (r"^encoder\.layers\.\d+\.self_attn\.relative_attention_bias\.", None),
    (r"^predictor\.", None),
    (r"^(patch_embedding|layer_norm|post_extract_proj|encoder\.layer_norm|encoder\.layers\.\d+)\.", r"\1."),
]

# BEATsConfig's defaults, for checkpoints whose cfg leaves a field out.
BEATS_CONFIG_DEFAULTS = {
    "embed_dim": 512,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "deep_norm": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": False,
    "num_buckets": 320,
    "max_distance": 1280,
    "gru_rel_pos": False,
}


def config_from_beats_cfg(cfg: dict) -> XLLMBeatsConfig:
    """Translate a BEATs `cfg` dict into our config, refusing variants this model does not compute."""
    cfg = {**BEATS_CONFIG_DEFAULTS, **cfg}
    unsupported = {
        "layer_norm_first": (cfg["layer_norm_first"], False),
        "relative_position_embedding": (cfg["relative_position_embedding"], True),
        "gru_rel_pos": (cfg["gru_rel_pos"], True),
    }
    for name, (value, expected) in unsupported.items():
        if bool(value) != expected:
            raise ValueError(f"BEATs cfg {name}={value} is not supported; expected {expected}")
    if "input_patch_size" not in cfg:
        raise ValueError("BEATs cfg lacks input_patch_size")
    return XLLMBeatsConfig(
        patch_size=cfg["input_patch_size"],
        patch_embedding_size=cfg["embed_dim"],
        conv_bias=cfg["conv_bias"],
        hidden_size=cfg["encoder_embed_dim"],
        num_hidden_layers=cfg["encoder_layers"],
        num_attention_heads=cfg["encoder_attention_heads"],
        intermediate_size=cfg["encoder_ffn_embed_dim"],
        hidden_act=cfg["activation_fn"],
        deep_norm=cfg["deep_norm"],
        conv_pos_kernel_size=cfg["conv_pos"],
        conv_pos_groups=cfg["conv_pos_groups"],
        num_buckets=cfg["num_buckets"],
        max_distance=cfg["max_distance"],
    )


def convert_beats_checkpoint(path: str | Path) -> tuple[XLLMBeatsConfig, dict[str, torch.Tensor]]:
    """Read a BEATs .pt checkpoint and return our config and the renamed state dict."""
    checkpoint = load_weights_only(path)
    if not isinstance(checkpoint, dict) or "cfg" not in checkpoint or "model" not in checkpoint:
        raise ValueError(f"{path} is not a BEATs checkpoint: expected a dict with 'cfg' and 'model' entries")
    config = config_from_beats_cfg(checkpoint["cfg"])
    state_dict = rename_keys(checkpoint["model"], BEATS_TO_XLLM_KEYS)
    if "post_extract_proj.weight" not in state_dict:
        state_dict["post_extract_proj.weight"] = torch.eye(config.hidden_size)
        state_dict["post_extract_proj.bias"] = torch.zeros(config.hidden_size)
    return config, state_dict
