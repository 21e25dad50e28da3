"""Convert a LAVIS X-InstructBLIP per-modality checkpoint into one X-LLM Q-Former interface.

X-InstructBLIP (salesforce/LAVIS, `lavis/models/blip2_models/blip2_vicuna_xinstruct.py`) ships
one file per modality (`image_qformer.pth`, `video_qformer.pth`, `audio_qformer_improved.pth`,
`pc_qformer.pth`) holding `{"model": state_dict}` with that modality's trainable parts: its
Q-Former, query tokens, encoder LayerNorm and LLM projection. Encoders and Vicuna are not in the
file. The file is read with `torch.load(weights_only=True)`; a pickle that could run code is
refused with a ValueError.

Key mapping (LAVIS -> `QFormerInterface`), `m` the LAVIS modality prefix (`image_`, `video_`,
`audio_`, `pc_`; empty in BLIP-2 / InstructBLIP LAVIS files), `i` the layer index:

| LAVIS key                                                   | QFormerInterface key                              |
| ----------------------------------------------------------- | ------------------------------------------------- |
| `m query_tokens`                                            | `query_tokens`                                    |
| `m ln.*` (`ln_vision.*` without prefix)                     | `encoder_layer_norm.*`                            |
| `m llm_proj.*`                                              | `adapter.*`                                       |
| `m Qformer.bert.embeddings.{word,position}_embeddings.*`    | `qformer.{word,position}_embeddings.*`            |
| `m Qformer.bert.embeddings.LayerNorm.*`                     | `qformer.embedding_layer_norm.*`                  |
| `m Qformer.bert.encoder.layer.i.attention.self.{query,key,value}.*` | `qformer.layers.i.self_attention.{query,key,value}.*` |
| `m Qformer.bert.encoder.layer.i.attention.output.dense.*`   | `qformer.layers.i.self_attention.output.*`        |
| `m Qformer.bert.encoder.layer.i.attention.output.LayerNorm.*` | `qformer.layers.i.self_attention.layer_norm.*`  |
| `m Qformer.bert.encoder.layer.i.crossattention.*`           | `qformer.layers.i.cross_attention.*` (as above)   |
| `m Qformer.bert.encoder.layer.i.intermediate_query.dense.*` | `qformer.layers.i.query_feed_forward.intermediate.*` |
| `m Qformer.bert.encoder.layer.i.output_query.{dense,LayerNorm}.*` | `qformer.layers.i.query_feed_forward.{output,layer_norm}.*` |
| `m Qformer.bert.encoder.layer.i.intermediate.dense.*`       | `qformer.layers.i.text_feed_forward.intermediate.*` |
| `m Qformer.bert.encoder.layer.i.output.{dense,LayerNorm}.*` | `qformer.layers.i.text_feed_forward.{output,layer_norm}.*` |
| `m Qformer.bert.embeddings.position_ids`, `m Qformer.cls.*` | dropped (a buffer; the unused LM head)            |

Sizes are read from the tensor shapes. The head count is not stored and comes from the argument
(BERT-base's 12 by default); LAVIS' LayerNorm on encoder features uses PyTorch's eps (1e-5), as
our `encoder_layer_norm` does, and BERT's layer_norm_eps (1e-12) inside the Q-Former.
"""

from pathlib import Path

import torch

from .configuration_xllm import XLLMConfig, XLLMInterfaceConfig
from .convert_pointbert import load_weights_only, rename_keys

# LAVIS' modality names -> ours.
LAVIS_MODALITIES = {"image": "image", "video": "video", "audio": "audio", "pc": "point_cloud"}

LAYER = r"^Qformer\.bert\.encoder\.layer\.(\d+)\."
OURS = r"qformer.layers.\1."

LAVIS_TO_XLLM_KEYS = [
    (r"^query_tokens$", "query_tokens"),
    (r"^(ln|ln_vision)\.", "encoder_layer_norm."),
    (r"^llm_proj\.", "adapter."),
    (r"^Qformer\.bert\.embeddings\.position_ids$", None),
    (r"^Qformer\.cls\.", None),
    (r"^Qformer\.bert\.embeddings\.(word|position)_embeddings\.", r"qformer.\1_embeddings."),
    (r"^Qformer\.bert\.embeddings\.LayerNorm\.", "qformer.embedding_layer_norm."),
    (LAYER + r"attention\.self\.", OURS + "self_attention."),
    (LAYER + r"attention\.output\.dense\.", OURS + "self_attention.output."),
    (LAYER + r"attention\.output\.LayerNorm\.", OURS + "self_attention.layer_norm."),
    (LAYER + r"crossattention\.self\.", OURS + "cross_attention."),
    (LAYER + r"crossattention\.output\.dense\.", OURS + "cross_attention.output."),
    (LAYER + r"crossattention\.output\.LayerNorm\.", OURS + "cross_attention.layer_norm."),
    (LAYER + r"intermediate_query\.dense\.", OURS + "query_feed_forward.intermediate."),
    (LAYER + r"output_query\.dense\.", OURS + "query_feed_forward.output."),
    (LAYER + r"output_query\.LayerNorm\.", OURS + "query_feed_forward.layer_norm."),
    (LAYER + r"intermediate\.dense\.", OURS + "text_feed_forward.intermediate."),
    (LAYER + r"output\.dense\.", OURS + "text_feed_forward.output."),
    (LAYER + r"output\.LayerNorm\.", OURS + "text_feed_forward.layer_norm."),
]


def modality_state_dict(state_dict: dict[str, torch.Tensor], lavis_modality: str) -> dict[str, torch.Tensor]:
    """The tensors of one modality, its `<modality>_` prefix removed.

    Files without prefixed keys (LAVIS BLIP-2 / InstructBLIP) are taken whole for `image`; their
    encoder LayerNorm is `ln_vision`. Keys of other parts (encoders, other modalities, stage-1
    heads such as `vision_proj`, `itm_head`, `temp`) are left out.
    """
    if lavis_modality not in LAVIS_MODALITIES:
        raise ValueError(
            f"`lavis_modality` must be one of {sorted(LAVIS_MODALITIES)}, got {lavis_modality!r}."
        )
    prefix = f"{lavis_modality}_"
    selected = {key.removeprefix(prefix): t for key, t in state_dict.items() if key.startswith(prefix)}
    if not selected and lavis_modality == "image":
        interface_parts = ("Qformer.", "query_tokens", "ln_vision.", "llm_proj.")
        selected = {key: t for key, t in state_dict.items() if key.startswith(interface_parts)}
    if "query_tokens" not in selected:
        raise ValueError(
            f"The checkpoint has no {prefix}query_tokens: it is not a LAVIS {lavis_modality} Q-Former checkpoint "
            f"(its first keys: {list(state_dict)[:5]})."
        )
    return selected


def interface_config_from_shapes(
    state_dict: dict[str, torch.Tensor], num_attention_heads: int
) -> XLLMInterfaceConfig:
    """An instruction-aware Q-Former interface config with the sizes of the converted tensors.

    X-InstructBLIP's Q-Formers all read the instruction; a checkpoint without the text embeddings
    (`qformer_text_input=False`) is refused.
    """
    if "qformer.word_embeddings.weight" not in state_dict:
        raise ValueError("The checkpoint's Q-Former has no word embeddings: it does not read instructions.")
    layers = sorted({int(key.split(".")[2]) for key in state_dict if key.startswith("qformer.layers.")})
    cross_layers = [i for i in layers if f"qformer.layers.{i}.cross_attention.query.weight" in state_dict]
    if not cross_layers or cross_layers[0] != 0:
        raise ValueError(
            f"Expected cross-attention from layer 0 on; the checkpoint has it in layers {cross_layers}."
        )
    frequency = cross_layers[1] - cross_layers[0] if len(cross_layers) > 1 else len(layers)
    query_tokens = state_dict["query_tokens"]  # (1, queries, hidden)
    return XLLMInterfaceConfig(
        kind="qformer",
        num_query_tokens=query_tokens.shape[1],
        hidden_size=query_tokens.shape[2],
        num_hidden_layers=len(layers),
        num_attention_heads=num_attention_heads,
        intermediate_size=state_dict["qformer.layers.0.query_feed_forward.intermediate.weight"].shape[0],
        cross_attention_frequency=frequency,
        instruction_aware=True,
        vocab_size=state_dict["qformer.word_embeddings.weight"].shape[0],
        max_position_embeddings=state_dict["qformer.position_embeddings.weight"].shape[0],
        encoder_hidden_size=state_dict["encoder_layer_norm.weight"].shape[0],
        output_hidden_size=state_dict["adapter.weight"].shape[0],
    )


def convert_lavis_checkpoint(
    path: str | Path, lavis_modality: str, num_attention_heads: int = 12
) -> tuple[XLLMInterfaceConfig, dict[str, torch.Tensor]]:
    """Read a LAVIS checkpoint and return one modality's interface config and `QFormerInterface` state dict."""
    checkpoint = load_weights_only(path)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}; expected a (LAVIS) state dict.")
    state_dict = checkpoint.get("model", checkpoint)
    converted = rename_keys(modality_state_dict(state_dict, lavis_modality), LAVIS_TO_XLLM_KEYS)
    return interface_config_from_shapes(converted, num_attention_heads), converted


def load_lavis_interface(model: torch.nn.Module, path: str | Path, lavis_modality: str) -> None:
    """Load a LAVIS per-modality checkpoint into the matching interface of an XLLM model.

    Every interface weight must come from the file (no missing and no unexpected keys) and the
    sizes must agree with the model's config; otherwise a ValueError says which.
    """
    config: XLLMConfig = model.config
    modality = LAVIS_MODALITIES.get(lavis_modality)
    if modality not in config.modalities:
        raise ValueError(
            f"`lavis_modality` {lavis_modality!r} maps to {modality!r}, which this model lacks "
            f"(it has {config.modalities})."
        )
    interface = model.get_submodule("model.interfaces" if hasattr(model, "model") else "interfaces")[modality]
    file_config, state_dict = convert_lavis_checkpoint(
        path, lavis_modality, interface.config.num_attention_heads
    )
    fields = (
        "num_query_tokens",
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "cross_attention_frequency",
        "vocab_size",
        "max_position_embeddings",
        "encoder_hidden_size",
        "output_hidden_size",
    )
    differences = {f: (getattr(file_config, f), getattr(interface.config, f)) for f in fields}
    differences = {f: pair for f, pair in differences.items() if pair[0] != pair[1]}
    if differences:
        raise ValueError(
            f"{path} does not fit the {modality} interface; (file, model) sizes differ: {differences}."
        )
    interface.load_state_dict(state_dict, strict=True)


def convert_lavis_folder(
    checkpoint: str | Path,
    model_dir: str | Path,
    lavis_modality: str,
    output: str | Path,
    dtype: str = "auto",
) -> Path:
    """A saved X-LLM folder with one interface replaced by a LAVIS checkpoint's, written with remote code
    and a model card to `output` (`xllm convert lavis`)."""
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    from xllm.hub import save_for_hub

    model = AutoModelForMultimodalLM.from_pretrained(model_dir, dtype=dtype)
    load_lavis_interface(model, checkpoint, lavis_modality)
    return save_for_hub(model, AutoProcessor.from_pretrained(model_dir), output)


__all__ = ["LAVIS_MODALITIES", "convert_lavis_checkpoint", "convert_lavis_folder", "load_lavis_interface"]
