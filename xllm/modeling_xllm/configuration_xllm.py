"""Configuration of X-LLM: frozen encoders, trainable X2L interfaces, a frozen LLM.

One composite config holds the LLM's `text_config`, one encoder config per encoder and one
`XLLMInterfaceConfig` per modality, keyed as the modality table (`model_modalities.py`) says. The
image and video interfaces share the vision encoder.
"""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec, classproperty

from .configuration_beats import XLLMBeatsConfig
from .configuration_pointbert import XLLMPointBertConfig
from .model_modalities import (
    MODALITIES,
    encoder_config_key,
    encoder_names,
    interface_config_key,
    model_modality,
    token_id_key,
)
from .remote_code_llm import UnresolvedRemoteCodeConfig, needs_remote_code

# Encoders of this package must resolve from `config.json` also where `xllm` is not installed
# (remote code), so their configs register themselves here.
AutoConfig.register(XLLMBeatsConfig.model_type, XLLMBeatsConfig, exist_ok=True)
AutoConfig.register(XLLMPointBertConfig.model_type, XLLMPointBertConfig, exist_ok=True)

INTERFACE_KINDS = ("qformer", "cformer", "linear")
# `linear` interfaces: what runs between the pooled-feature expansion and the adapter.
#   `lavis`: nothing (LAVIS `projection_only` with `proj_dim`, blip2_vicuna_xinstruct.py:334-340, 432-437 and
#            703-707: `{m}_projection` to queries x 768, then `{m}_llm_proj`, no activation);
#   `gelu_between`: a GELU (this package's earlier linear interface).
LINEAR_VARIANTS = ("lavis", "gelu_between")


@strict
class XLLMInterfaceConfig(PreTrainedConfig):
    r"""
    One X2L interface: it turns encoder features into embeddings in the LLM's input space.

    `kind` chooses the module: `qformer` (learned queries, cross-attention to the encoder every
    `cross_attention_frequency` layers, optionally reading the instruction), `cformer` (CIF, then a
    transformer stack; speech only) or `linear` (the X-InstructBLIP ablation: pooled encoder
    features mapped to `num_query_tokens` embeddings; `linear_variant` says whether a GELU runs between its two
    linear maps: `lavis`, LAVIS's layout, has none; `gelu_between` has one). Widths follow BERT-base, as
    BLIP-2's Q-Former.

    The interface owns the LayerNorm applied to encoder outputs and the choice of the encoder layer
    that feeds it (`encoder_feature_layer`, an index into the encoder's hidden states) and whether
    the encoder's first (CLS) token is kept (`encoder_keep_cls`). That LayerNorm's eps
    (`encoder_layer_norm_eps`) is PyTorch's 1e-5 as LAVIS' `ln_vision`; converted transformers BLIP-2 /
    InstructBLIP models take their vision config's `layer_norm_eps` (1e-6).

    `frame_positions` (video time, beyond the papers; 0 in every published preset): the number of frame
    positions a Q-Former of a video (or windowed audio) interface knows. With it, each frame's queries
    know their frame's time and read every frame of their video, each frame's encoder features marked
    with its time (learned position embeddings), so the interface can see motion; without it (X-LLM,
    X-InstructBLIP) each frame is read alone and only the frozen LLM could compare frames.

    Example:

    ```python
    >>> from xllm import XLLMInterfaceConfig
    >>> XLLMInterfaceConfig(num_query_tokens=32, num_hidden_layers=12).hidden_size
    768
    ```"""

    model_type = "xllm_interface"

    kind: str = "qformer"
    num_query_tokens: int = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    cross_attention_frequency: int = 2
    instruction_aware: bool = True
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    pad_token_id: int | None = 0
    encoder_hidden_size: int | None = None
    output_hidden_size: int | None = None
    encoder_feature_layer: int = -1
    encoder_keep_cls: bool = True
    encoder_layer_norm_eps: float = 1e-5
    linear_variant: str = "gelu_between"
    cif_threshold: float = 1.0
    cif_tail_threshold: float = 0.5
    quantity_loss_weight: float = 1.0
    frame_positions: int = 0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.kind not in INTERFACE_KINDS:
            raise ValueError(f"`kind` must be one of {INTERFACE_KINDS}, got {self.kind!r}.")
        if self.linear_variant not in LINEAR_VARIANTS:
            raise ValueError(
                f"`linear_variant` must be one of {LINEAR_VARIANTS}, got {self.linear_variant!r}."
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be a multiple of `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        if self.cross_attention_frequency < 1:
            raise ValueError(
                f"`cross_attention_frequency` must be >= 1, got {self.cross_attention_frequency}."
            )
        if self.frame_positions < 0 or (self.frame_positions and self.kind != "qformer"):
            raise ValueError(
                "`frame_positions` (video time) is a count of frame positions for a `qformer` interface, or 0; "
                f"got {self.frame_positions} for kind {self.kind!r}."
            )
        if self.num_query_tokens < 1 and self.kind != "cformer":
            raise ValueError(f"`num_query_tokens` must be >= 1, got {self.num_query_tokens}.")


@strict
class XLLMConfig(PreTrainedConfig):
    r"""
    Composite configuration of [`XLLMForConditionalGeneration`].

    `text_config` is any causal LM config (Llama, Qwen2, OPT, GLM, ...). The other sub-configs follow
    the modality table (`model_modalities.MODALITIES`): one encoder config per encoder
    (`vision_config` feeds both the image and the video interface; `speech_config`, `audio_config`,
    `point_cloud_config`), and per modality an interface config (`image_interface_config`, ...) and a
    placeholder token id (`image_token_id`, ...). A modality whose interface config is `None` is absent
    from the model; a key the table does not know (`depth_interface_config` without a `depth` row) is
    a ValueError rather than a setting that would be silently ignored.

    `num_video_frames` is the number of frames the processor samples by default; the model itself
    accepts any number of frames.

    `modality_cues` (e.g. `default_modality_cues()`) is the text the processor writes before each media
    block, per modality (X-InstructBLIP's `image: `, `3d: `, ...); None writes none.

    Example:

    ```python
    >>> from transformers import CLIPVisionConfig, LlamaConfig
    >>> from xllm import XLLMConfig, XLLMForConditionalGeneration, XLLMInterfaceConfig

    >>> config = XLLMConfig(
    ...     text_config=LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=200),
    ...     vision_config=CLIPVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8),
    ...     image_interface_config=XLLMInterfaceConfig(num_query_tokens=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4),
    ...     image_token_id=199,
    ... )
    >>> model = XLLMForConditionalGeneration(config)
    ```"""

    model_type = "xllm"

    # The encoder and interface sub-configs are not listed here: they follow the modality table (see
    # `sub_configs`), and `__post_init__` builds them.
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    num_video_frames: int = 5
    modality_cues: dict | None = None
    tie_word_embeddings: bool = False

    @classproperty
    def sub_configs(cls) -> dict[str, type]:
        """Every sub-config key, as transformers reads them (dtype, attention implementation): the LLM's,
        one per encoder and one interface config per modality of the table."""
        keys = {"text_config": AutoConfig}
        keys.update({encoder_config_key(encoder): AutoConfig for encoder in encoder_names()})
        keys.update({interface_config_key(modality): XLLMInterfaceConfig for modality in MODALITIES})
        return keys

    def __post_init__(self, **kwargs):
        for encoder in encoder_names():
            key = encoder_config_key(encoder)
            setattr(self, key, encoder_config(key, kwargs.pop(key, None)))
        for modality in MODALITIES:
            interface = kwargs.pop(interface_config_key(modality), None)
            if isinstance(interface, dict):
                interface = XLLMInterfaceConfig(**interface)
            setattr(self, interface_config_key(modality), interface)
            setattr(self, token_id_key(modality), kwargs.pop(token_id_key(modality), None))
        refuse_unknown_modality_keys(kwargs)
        if needs_remote_code(self.text_config):  # the LLM's classes come from code, at model building
            self.text_config = UnresolvedRemoteCodeConfig(**self.text_config)
        super().__post_init__(**kwargs)
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        if self.num_video_frames < 1:
            raise ValueError(f"`num_video_frames` must be >= 1, got {self.num_video_frames}.")
        unknown_cues = sorted(set(self.modality_cues or ()) - set(MODALITIES))
        if unknown_cues:
            raise ValueError(
                f"`modality_cues` must be keyed by modalities among {list(MODALITIES)}, got {unknown_cues}."
            )
        for modality in self.modalities:
            self._check_modality(modality)

    def __eq__(self, other) -> bool:
        # The dataclass equality transformers generates compares declared fields only; the encoder and
        # interface configs are attributes built from the modality table.
        return isinstance(other, XLLMConfig) and self.__dict__ == other.__dict__

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model has an interface for, in table order."""
        return tuple(m for m in MODALITIES if self.interface_config(m) is not None)

    def interface_config(self, modality: str) -> XLLMInterfaceConfig | None:
        model_modality(modality)
        return getattr(self, interface_config_key(modality), None)

    def encoder_config(self, modality: str) -> PreTrainedConfig | None:
        return getattr(self, encoder_config_key(model_modality(modality).encoder), None)

    def placeholder_token_id(self, modality: str) -> int | None:
        model_modality(modality)
        return getattr(self, token_id_key(modality), None)

    def _check_modality(self, modality: str) -> None:
        interface = self.interface_config(modality)
        encoder_field = encoder_config_key(model_modality(modality).encoder)
        encoder = getattr(self, encoder_field)
        if encoder is None:
            raise ValueError(
                f"`{interface_config_key(modality)}` is set but `{encoder_field}` is None: the {modality} "
                "interface needs an encoder."
            )
        token_id = self.placeholder_token_id(modality)
        if token_id is None:
            raise ValueError(
                f"`{token_id_key(modality)}` must be set when the model has a {modality} interface."
            )
        vocab_size = self.text_config.vocab_size
        if not 0 <= token_id < vocab_size:
            raise ValueError(
                f"`{token_id_key(modality)}` must index the LLM vocabulary (size {vocab_size}), got {token_id}."
            )
        encoder_width = encoder_hidden_size(encoder)
        if interface.encoder_hidden_size is None:
            interface.encoder_hidden_size = encoder_width
        elif interface.encoder_hidden_size != encoder_width:
            raise ValueError(
                f"`{interface_config_key(modality)}.encoder_hidden_size` is {interface.encoder_hidden_size} but "
                f"`{encoder_field}` produces features of width {encoder_width}."
            )
        llm_width = self.text_config.hidden_size
        if interface.output_hidden_size is None:
            interface.output_hidden_size = llm_width
        elif interface.output_hidden_size != llm_width:
            raise ValueError(
                f"`{interface_config_key(modality)}.output_hidden_size` is {interface.output_hidden_size} but "
                f"the LLM (`text_config.hidden_size`) is {llm_width} wide."
            )
        kinds = model_modality(modality).interface_kinds
        if interface.kind not in kinds:
            raise ValueError(
                f"`{interface_config_key(modality)}.kind` is {interface.kind!r}, but a {modality} interface "
                f"({model_modality(modality).layout} items) must be one of {list(kinds)}."
            )


def encoder_config(key: str, value: dict | PreTrainedConfig | None) -> PreTrainedConfig | None:
    """An encoder sub-config from what `config.json` or the caller gives: a config, or a dict naming
    its `model_type` (any transformers encoder, or one of this package)."""
    if value is None or isinstance(value, PreTrainedConfig):
        return value
    if not isinstance(value, dict) or "model_type" not in value:
        raise ValueError(
            f"`{key}` must be an encoder config or a dict with its `model_type`, got {str(value)[:200]}."
        )
    value = dict(value)
    return AutoConfig.for_model(value.pop("model_type"), **value)


def refuse_unknown_modality_keys(kwargs: dict) -> None:
    """An interface config for a modality the table does not know would be kept as a plain attribute
    and never built: refuse it."""
    suffix = "_interface_config"
    unknown = sorted(
        key for key in kwargs if key.endswith(suffix) and key.removesuffix(suffix) not in MODALITIES
    )
    if unknown:
        raise ValueError(
            f"`XLLMConfig` got {unknown}, but the modality table knows only {list(MODALITIES)}: add a row to "
            "`model_modalities.MODALITIES` (and `processor_modalities.MODALITIES`) for a new modality."
        )


def encoder_hidden_size(encoder_config: PreTrainedConfig) -> int:
    """Width of the features an encoder produces (`d_model` for Whisper-style configs;
    `xllm_output_size` where an encoder of this package ends in a projection, e.g. ULIP-2's PointBERT)."""
    for name in ("xllm_output_size", "hidden_size", "d_model"):
        if getattr(encoder_config, name, None) is not None:
            return getattr(encoder_config, name)
    raise ValueError(f"Cannot find the feature width of encoder config {type(encoder_config).__name__}.")


__all__ = ["XLLMConfig", "XLLMInterfaceConfig", "encoder_hidden_size"]
