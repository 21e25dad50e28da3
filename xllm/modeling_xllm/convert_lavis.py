"""Convert a LAVIS X-InstructBLIP per-modality checkpoint into one X-LLM interface.

X-InstructBLIP (salesforce/LAVIS, `lavis/models/blip2_models/blip2_vicuna_xinstruct.py`) releases one
file per modality and LLM size (`projects/xinstructblip`; the URLs are in
`lavis/configs/models/blip2/blip2_xinstruct_vicuna{7b,13b}.yaml` and
`projects/xinstructblip/demo/configs/*.yaml`): `image_qformer.pth`, `video_qformer.pth`,
`audio_qformer.pth` / `audio_qformer_improved.pth`, `pc_qformer.pth` for Vicuna-7b and -13b, and the
linear ablation `linear_projection_7b/{image,audio,pc}_qformer_linear.pth`. Each is what LAVIS'
runner saves (`lavis/runners/runner_iter.py:169-193`): `{"model", "optimizer", "config", "scaler",
"iters"}` (`"epoch"` for `runner_base.py:600-606`), or `{"model": ...}` alone. `model` is the model's
state dict less its frozen *parameters*; buffers stay, also those of frozen modules. The file is read
with `torch.load(weights_only=True)`; a pickle that could run code is refused with a ValueError.

Every key of the file either maps to an interface key or is skipped by a named rule with its reason
(`SKIP_RULES`, the runner entries in `RUNNER_ENTRIES`); any other key is an error, and so is a key whose
shape differs from the model's (the error names the key, both shapes, and the preset it would fit).

Key mapping, `m` the LAVIS modality prefix (`image_`, `video_`, `audio_`, `pc_`; empty in BLIP-2 /
InstructBLIP LAVIS files), `i` the layer index. Q-Former files (-> `QFormerInterface`):

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

Linear files (`projection_only`, -> `LinearInterface` with `linear_variant="lavis"`): `m ln.*` ->
`encoder_layer_norm.*`, `m projection.*` -> `expand.*`, `m llm_proj.*` -> `adapter.*`.

Sizes are read from the tensor shapes. The head count is not stored and comes from the model (or the
argument, BERT-base's 12 by default). LAVIS' LayerNorm on encoder features has PyTorch's eps (1e-5,
`blip2.py` `LayerNorm`), as `encoder_layer_norm_eps` does by default, and BERT's 1e-12 inside the Q-Former.

One LAVIS setting changes what its released model computes without changing the file:
`blip2_xinstruct_vicuna13b.yaml` has no `load_ln_type_pc`, so LAVIS' 13b model leaves `pc_ln` at its
initial weight 1, bias 0 (`init_ln`, blip2_vicuna_xinstruct.py:2376-2401) and ignores the file's. The
file's (trained) LayerNorm is loaded by default; `layer_norm="lavis_13b_pc_config"` reproduces LAVIS.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .configuration_xllm import XLLMConfig, XLLMInterfaceConfig
from .convert_pointbert import load_weights_only

# LAVIS' modality names -> ours.
LAVIS_MODALITIES = {"image": "image", "video": "video", "audio": "audio", "pc": "point_cloud"}

# Entries of a LAVIS runner checkpoint besides "model" (runner_iter.py:181-187, runner_base.py:600-606).
RUNNER_ENTRIES = {
    "optimizer": "optimizer state (moments and step counts of the trained parameters), not weights",
    "config": "the LAVIS run configuration",
    "scaler": "the mixed-precision loss scaler's state",
    "iters": "the training iteration of the checkpoint",
    "epoch": "the training epoch of the checkpoint",
}

LAYER = r"^Qformer\.bert\.encoder\.layer\.(\d+)\."
OURS = r"qformer.layers.\1."

# Keys (the modality prefix removed) -> QFormerInterface keys.
QFORMER_KEYS = [
    (r"^query_tokens$", "query_tokens"),
    (r"^(ln|ln_vision)\.", "encoder_layer_norm."),
    (r"^llm_proj\.", "adapter."),
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

# Keys (the modality prefix removed) -> LinearInterface keys (blip2_vicuna_xinstruct.py:334-341, 432-437).
LINEAR_KEYS = [
    (r"^ln\.", "encoder_layer_norm."),
    (r"^projection\.", "expand."),
    (r"^llm_proj\.", "adapter."),
]

# (rule name, pattern on the full key, why the key is not converted).
SKIP_RULES = [
    (
        "frozen-llama-buffer",
        r"^llm_model\..*\.rotary_emb\.inv_freq$",
        "a buffer of LAVIS' frozen Llama (rotary frequencies, modeling_llama.py:98); the runner keeps buffers "
        "of frozen modules, and transformers' Llama computes its own",
    ),
    (
        "frozen-point-encoder-batchnorm",
        r"^pc_encoder\..*\.(running_mean|running_var|num_batches_tracked)$",
        "BatchNorm statistics of the frozen ULIP-2 point encoder (dvae.py:183, 189); they come with its "
        "weights from the ULIP-2 checkpoint (convert_pointbert.py)",
    ),
    (
        "qformer-position-ids",
        r"^(\w+_)?Qformer\.bert\.embeddings\.position_ids$",
        "a buffer holding positions 0..511 (Qformer.py:69); the interface counts positions itself",
    ),
    (
        "qformer-lm-head",
        r"^(\w+_)?Qformer\.cls\.",
        "the Q-Former's language-model head, unused for generation (X-InstructBLIP sets it to None, "
        "blip2_vicuna_xinstruct.py:360)",
    ),
    (
        "blip2-stage1-heads",
        r"^(vision_proj|text_proj|itm_head)\.|^temp$",
        "BLIP-2 stage-1 heads (contrastive and matching objectives), unused for generation",
    ),
    (
        "frozen-image-encoder",
        r"^visual_encoder\.",
        "the frozen EVA ViT-g, loaded with the encoder (not the interface)",
    ),
]

LAYER_NORM_CHOICES = ("file", "lavis_13b_pc_config")


@dataclass
class LavisConversion:
    """One modality's interface, converted: its config and state dict, where each tensor came from, and
    every file key that was not converted with the reason."""

    lavis_modality: str
    config: XLLMInterfaceConfig
    state_dict: dict[str, torch.Tensor]
    sources: dict[str, str] = field(default_factory=dict)  # interface key -> LAVIS key
    skipped: dict[str, str] = field(default_factory=dict)  # LAVIS key (or runner entry) -> reason

    @property
    def modality(self) -> str:
        return LAVIS_MODALITIES[self.lavis_modality]


def read_lavis_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The `model` state dict of a LAVIS file and the runner entries beside it, each with why it is skipped.

    A runner checkpoint (`{"model", "optimizer", "config", "scaler", "iters"}`), a `{"model": ...}` file
    and a bare state dict are read; any other top-level entry is an error."""
    checkpoint = load_weights_only(path)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}; expected a (LAVIS) state dict.")
    if "model" not in checkpoint:
        return checkpoint, {}
    unknown = sorted(set(checkpoint) - {"model", *RUNNER_ENTRIES})
    if unknown:
        raise ValueError(
            f"{path} has top-level entries {unknown} besides 'model'; a LAVIS runner checkpoint has only "
            f"{['model', *RUNNER_ENTRIES]}."
        )
    skipped = {f"[{entry}]": RUNNER_ENTRIES[entry] for entry in checkpoint if entry != "model"}
    return checkpoint["model"], skipped


def lavis_modalities_in(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """The LAVIS modalities whose interface the file holds (`{m}_query_tokens` or `{m}_projection.weight`)."""
    found = [
        m
        for m in LAVIS_MODALITIES
        if f"{m}_query_tokens" in state_dict or f"{m}_projection.weight" in state_dict
    ]
    unprefixed_image = "query_tokens" in state_dict  # LAVIS BLIP-2 / InstructBLIP: one image Q-Former
    if not found and unprefixed_image:
        found = ["image"]
    return found


def only_modality(state_dict: dict[str, torch.Tensor]) -> str:
    """The one LAVIS modality whose interface the file holds; a ValueError where it holds none or several."""
    present = lavis_modalities_in(state_dict)
    if len(present) != 1:
        raise ValueError(
            f"The checkpoint holds the interfaces of {present or 'no modality'}; pass `lavis_modality` "
            f"(`--modality`), one of {sorted(LAVIS_MODALITIES)}."
        )
    return present[0]


def skip_reason(key: str) -> str | None:
    for name, pattern, reason in SKIP_RULES:
        if re.search(pattern, key):
            return f"{name}: {reason}"
    return None


def split_keys(
    state_dict: dict[str, torch.Tensor], lavis_modality: str
) -> tuple[str, dict[str, tuple[str, torch.Tensor]], dict[str, str]]:
    """(interface kind, {LAVIS key without prefix: (LAVIS key, tensor)} of this modality, skipped keys).

    Keys of other modalities are skipped (they convert with their own `lavis_modality`); a key that is
    neither this modality's, nor another's, nor matched by a `SKIP_RULES` rule is an error."""
    present = lavis_modalities_in(state_dict)
    if lavis_modality not in present:
        raise ValueError(
            f"The checkpoint has no {lavis_modality}_query_tokens (Q-Former) nor {lavis_modality}_projection "
            f"(linear): it holds no LAVIS {lavis_modality} interface (it holds {present or 'none'}; "
            f"its first keys: {list(state_dict)[:5]})."
        )
    unprefixed = present == ["image"] and "query_tokens" in state_dict
    ours, skipped, unknown = {}, {}, []
    for key, tensor in state_dict.items():
        reason = skip_reason(key)
        if reason is not None:
            skipped[key] = reason
            continue
        owner = next((m for m in LAVIS_MODALITIES if key.startswith(f"{m}_")), None)
        if owner == lavis_modality:
            ours[key.removeprefix(f"{owner}_")] = (key, tensor)
        elif owner is not None and not unprefixed:
            skipped[key] = (
                f"other-modality: part of the {owner} interface (convert it with lavis_modality={owner!r})"
            )
        elif unprefixed and key.startswith(("Qformer.", "query_tokens", "ln_vision.", "llm_proj.")):
            ours[key] = (key, tensor)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"The checkpoint has keys with no known mapping and no skip rule: {unknown[:20]}"
            f"{' ...' if len(unknown) > 20 else ''} ({len(unknown)} keys)."
        )
    kind = "linear" if "projection.weight" in ours else "qformer"
    return kind, ours, skipped


def rename(
    ours: dict[str, tuple[str, torch.Tensor]], rules: list[tuple[str, str]]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Apply the first matching rule to every key; a key no rule matches is an error."""
    converted, sources, unknown = {}, {}, []
    for key, (lavis_key, tensor) in ours.items():
        for pattern, replacement in rules:
            if re.search(pattern, key):
                new_key = re.sub(pattern, replacement, key)
                converted[new_key], sources[new_key] = tensor, lavis_key
                break
        else:
            unknown.append(lavis_key)
    if unknown:
        raise ValueError(f"The checkpoint has interface keys with no known mapping: {unknown}.")
    return converted, sources


def qformer_config_from_shapes(
    state_dict: dict[str, torch.Tensor], num_attention_heads: int
) -> XLLMInterfaceConfig:
    """An instruction-aware Q-Former interface config with the sizes of the converted tensors.

    X-InstructBLIP's Q-Formers all read the instruction; a checkpoint without the text embeddings
    (`qformer_text_input=False`) is refused."""
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


def linear_config_from_shapes(state_dict: dict[str, torch.Tensor]) -> XLLMInterfaceConfig:
    """A LAVIS-layout linear interface config: `expand` is (queries x hidden, encoder), `adapter` (llm, hidden)."""
    hidden = state_dict["adapter.weight"].shape[1]
    expanded, encoder = state_dict["expand.weight"].shape
    if expanded % hidden:
        raise ValueError(
            f"The projection has {expanded} outputs, not a multiple of the LLM projection's input width {hidden}."
        )
    return XLLMInterfaceConfig(
        kind="linear",
        linear_variant="lavis",
        num_query_tokens=expanded // hidden,
        hidden_size=hidden,
        num_attention_heads=1,
        instruction_aware=False,
        encoder_hidden_size=encoder,
        output_hidden_size=state_dict["adapter.weight"].shape[0],
    )


def convert_lavis_state_dict(
    state_dict: dict[str, torch.Tensor],
    lavis_modality: str | None = None,
    num_attention_heads: int = 12,
    layer_norm: str = "file",
) -> LavisConversion:
    """Convert one modality's interface of a LAVIS `model` state dict (the only one it holds by default).

    `layer_norm="lavis_13b_pc_config"` leaves the encoder LayerNorm at weight 1, bias 0, as LAVIS'
    13b config does for 3D (see the module docstring); the file's LayerNorm is then skipped."""
    if lavis_modality is not None and lavis_modality not in LAVIS_MODALITIES:
        raise ValueError(
            f"`lavis_modality` must be one of {sorted(LAVIS_MODALITIES)}, got {lavis_modality!r}."
        )
    if layer_norm not in LAYER_NORM_CHOICES:
        raise ValueError(f"`layer_norm` must be one of {LAYER_NORM_CHOICES}, got {layer_norm!r}.")
    if lavis_modality is None:
        lavis_modality = only_modality(state_dict)
    kind, ours, skipped = split_keys(state_dict, lavis_modality)
    converted, sources = rename(ours, LINEAR_KEYS if kind == "linear" else QFORMER_KEYS)
    if kind == "linear":
        config = linear_config_from_shapes(converted)
    else:
        config = qformer_config_from_shapes(converted, num_attention_heads)
    if layer_norm == "lavis_13b_pc_config":
        if lavis_modality != "pc":
            raise ValueError(
                f"`layer_norm='lavis_13b_pc_config'` is LAVIS' 3D (pc) setting, got {lavis_modality!r}."
            )
        for name in ("weight", "bias"):
            key = f"encoder_layer_norm.{name}"
            skipped[sources.pop(key)] = (
                "lavis-13b-pc-config: LAVIS' blip2_xinstruct_vicuna13b.yaml has no load_ln_type_pc, so its model "
                "keeps this LayerNorm at weight 1, bias 0"
            )
            fill = torch.ones_like if name == "weight" else torch.zeros_like
            converted[key] = fill(converted[key])
    return LavisConversion(lavis_modality, config, converted, sources, skipped)


def convert_lavis_checkpoint(
    path: str | Path,
    lavis_modality: str | None = None,
    num_attention_heads: int = 12,
    layer_norm: str = "file",
) -> LavisConversion:
    """Read a LAVIS checkpoint file and convert one modality's interface (see `convert_lavis_state_dict`);
    the runner's entries beside `model` are listed in `skipped` with their reasons."""
    state_dict, runner_entries = read_lavis_state_dict(path)
    conversion = convert_lavis_state_dict(state_dict, lavis_modality, num_attention_heads, layer_norm)
    conversion.skipped.update(runner_entries)
    return conversion


def interface_of(model: torch.nn.Module, modality: str) -> torch.nn.Module:
    return model.get_submodule("model.interfaces" if hasattr(model, "model") else "interfaces")[modality]


def fitting_presets(modality: str, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The presets whose `modality` interface has exactly these tensor shapes (built on the meta device)."""
    from .configuration_presets import PRESETS, preset_config
    from .modeling_xllm import build_interface

    fitting = []
    for name in PRESETS:
        config = preset_config(name).interface_config(modality)
        if config is None:
            continue
        with torch.device("meta"):
            expected = {key: tuple(t.shape) for key, t in build_interface(config).state_dict().items()}
        if expected == shapes:
            fitting.append(name)
    return fitting


def interface_kind(config: XLLMInterfaceConfig) -> str:
    return f"linear ({config.linear_variant})" if config.kind == "linear" else config.kind


def check_fits(conversion: LavisConversion, interface: torch.nn.Module, path: str | Path) -> None:
    """Same kind, same keys and same shapes as the model's interface; a ValueError says what differs."""
    modality, config = conversion.modality, interface.config
    file_shapes = {key: tuple(t.shape) for key, t in conversion.state_dict.items()}
    expected = {key: tuple(t.shape) for key, t in interface.state_dict().items()}
    wrong = [key for key in file_shapes if key in expected and file_shapes[key] != expected[key]]
    missing, unexpected = sorted(set(expected) - set(file_shapes)), sorted(set(file_shapes) - set(expected))
    file_kind, model_kind = (interface_kind(c) for c in (conversion.config, config))
    kind_differs = file_kind != model_kind
    if not (wrong or missing or unexpected or kind_differs):
        return
    presets = fitting_presets(modality, file_shapes)
    fits = (
        f"it fits the {modality} interface of the preset(s) {presets}"
        if presets
        else "no preset has its shapes"
    )
    source = conversion.sources
    if kind_differs:
        what = f"it holds a {file_kind} interface, the model's is {model_kind}"
    elif wrong:
        what = "; ".join(
            f"`{source.get(key, key)}` (our `{key}`) has shape {file_shapes[key]}, the model expects {expected[key]}"
            for key in wrong[:5]
        )
    else:
        what = (
            f"the file lacks {missing[:5] or 'nothing'} and holds {[source.get(k, k) for k in unexpected][:5] or 'nothing'} "
            "that the model lacks"
        )
    raise ValueError(f"{path} does not fit the model's {modality} interface: {what}; {fits}.")


def load_lavis_interface(
    model: torch.nn.Module, path: str | Path, lavis_modality: str | None = None, layer_norm: str = "file"
) -> LavisConversion:
    """Load a LAVIS per-modality checkpoint into the matching interface of an XLLM model.

    Every interface tensor must come from the file, with the model's shape: no missing and no unexpected
    keys. Returns the conversion (its `skipped` says which file keys were not loaded, and why)."""
    config: XLLMConfig = model.config
    state_dict, runner_entries = read_lavis_state_dict(path)
    lavis_modality = lavis_modality or only_modality(state_dict)
    modality = LAVIS_MODALITIES.get(lavis_modality)
    if modality not in config.modalities:
        raise ValueError(
            f"`lavis_modality` {lavis_modality!r} maps to {modality!r}, which this model lacks "
            f"(it has {config.modalities})."
        )
    heads = config.interface_config(modality).num_attention_heads
    conversion = convert_lavis_state_dict(state_dict, lavis_modality, heads, layer_norm)
    conversion.skipped.update(runner_entries)
    interface = interface_of(model, conversion.modality)
    check_fits(conversion, interface, path)
    interface.load_state_dict(conversion.state_dict, strict=True)
    return conversion


def convert_lavis_folder(
    checkpoint: str | Path,
    model_dir: str | Path,
    lavis_modality: str | None,
    output: str | Path,
    dtype: str = "auto",
    layer_norm: str = "file",
) -> Path:
    """A saved X-LLM folder with one interface replaced by a LAVIS checkpoint's, written with remote code
    and a model card to `output` (`xllm convert lavis`)."""
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    from xllm.hub import save_for_hub

    model = AutoModelForMultimodalLM.from_pretrained(model_dir, dtype=dtype)
    load_lavis_interface(model, checkpoint, lavis_modality, layer_norm)
    return save_for_hub(model, AutoProcessor.from_pretrained(model_dir), output)


__all__ = [
    "LAVIS_MODALITIES",
    "RUNNER_ENTRIES",
    "SKIP_RULES",
    "LavisConversion",
    "convert_lavis_checkpoint",
    "convert_lavis_folder",
    "convert_lavis_state_dict",
    "load_lavis_interface",
]
