"""Configuration of X-LLM: frozen encoders, trainable X2L interfaces, a frozen LLM.

One composite config holds the LLM's `text_config`, one encoder config per encoder and one
`XLLMInterfaceConfig` per modality. The image and video interfaces share the vision encoder.
"""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_beats import XLLMBeatsConfig
from .configuration_pointbert import XLLMPointBertConfig

# Encoders of this package must resolve from `config.json` also where `xllm` is not installed
# (remote code), so their configs register themselves here.
AutoConfig.register(XLLMBeatsConfig.model_type, XLLMBeatsConfig, exist_ok=True)
AutoConfig.register(XLLMPointBertConfig.model_type, XLLMPointBertConfig, exist_ok=True)

MODALITIES = ("image", "video", "speech", "audio", "point_cloud")

# Which encoder config feeds which modality's interface.
ENCODER_OF_MODALITY = {
    "image": "vision_config",
    "video": "vision_config",
    "speech": "speech_config",
    "audio": "audio_config",
    "point_cloud": "point_cloud_config",
}

INTERFACE_KINDS = ("qformer", "cformer", "linear")

# X-InstructBLIP's text cue before each modality block (the LAVIS prompt prefixes); `speech: ` by analogy.
DEFAULT_MODALITY_CUES = {
    "image": "image: ",
    "video": "video: ",
    "speech": "speech: ",
    "audio": "audio: ",
    "point_cloud": "3d: ",
}


@strict
class XLLMInterfaceConfig(PreTrainedConfig):
    r"""
    One X2L interface: it turns encoder features into embeddings in the LLM's input space.

    `kind` chooses the module: `qformer` (learned queries, cross-attention to the encoder every
    `cross_attention_frequency` layers, optionally reading the instruction), `cformer` (CIF, then a
    transformer stack; speech only) or `linear` (the X-InstructBLIP ablation: pooled encoder
    features mapped to `num_query_tokens` embeddings). Widths follow BERT-base, as BLIP-2's Q-Former.

    The interface owns the LayerNorm applied to encoder outputs and the choice of the encoder layer
    that feeds it (`encoder_feature_layer`, an index into the encoder's hidden states) and whether
    the encoder's first (CLS) token is kept (`encoder_keep_cls`).

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
    cif_threshold: float = 1.0
    cif_tail_threshold: float = 0.5
    quantity_loss_weight: float = 1.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.kind not in INTERFACE_KINDS:
            raise ValueError(f"`kind` must be one of {INTERFACE_KINDS}, got {self.kind!r}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be a multiple of `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        if self.cross_attention_frequency < 1:
            raise ValueError(
                f"`cross_attention_frequency` must be >= 1, got {self.cross_attention_frequency}."
            )
        if self.num_query_tokens < 1 and self.kind != "cformer":
            raise ValueError(f"`num_query_tokens` must be >= 1, got {self.num_query_tokens}.")


def _interface_spec() -> SubConfigSpec:
    return SubConfigSpec(config_class=XLLMInterfaceConfig, optional=True)


@strict
class XLLMConfig(PreTrainedConfig):
    r"""
    Composite configuration of [`XLLMForConditionalGeneration`].

    `text_config` is any causal LM config (Llama, Qwen2, OPT, GLM, ...). `vision_config` is any vision
    encoder config (CLIP, SigLIP, BLIP-2 / InstructBLIP vision, ...) and feeds both the image and the
    video interface. Each modality present has an interface config and a placeholder token id; a
    modality whose interface config is `None` is absent from the model.

    `num_video_frames` is the number of frames the processor samples by default; the model itself
    accepts any number of frames.

    `modality_cues` (e.g. `DEFAULT_MODALITY_CUES`) is the text the processor writes before each media
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

    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="clip_vision_model", optional=True
        ),
        "speech_config": SubConfigSpec(config_class=AutoConfig, model_type="parakeet_encoder", optional=True),
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="xllm_beats", optional=True),
        "point_cloud_config": SubConfigSpec(
            config_class=AutoConfig, model_type="xllm_pointbert", optional=True
        ),
        "image_interface_config": _interface_spec(),
        "video_interface_config": _interface_spec(),
        "speech_interface_config": _interface_spec(),
        "audio_interface_config": _interface_spec(),
        "point_cloud_interface_config": _interface_spec(),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    speech_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    point_cloud_config: dict | PreTrainedConfig | None = None
    image_interface_config: dict | PreTrainedConfig | None = None
    video_interface_config: dict | PreTrainedConfig | None = None
    speech_interface_config: dict | PreTrainedConfig | None = None
    audio_interface_config: dict | PreTrainedConfig | None = None
    point_cloud_interface_config: dict | PreTrainedConfig | None = None
    image_token_id: int | None = None
    video_token_id: int | None = None
    speech_token_id: int | None = None
    audio_token_id: int | None = None
    point_cloud_token_id: int | None = None
    num_video_frames: int = 5
    modality_cues: dict | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        if self.num_video_frames < 1:
            raise ValueError(f"`num_video_frames` must be >= 1, got {self.num_video_frames}.")
        unknown_cues = sorted(set(self.modality_cues or ()) - set(MODALITIES))
        if unknown_cues:
            raise ValueError(
                f"`modality_cues` must be keyed by modalities among {MODALITIES}, got {unknown_cues}."
            )
        for modality in self.modalities:
            self._check_modality(modality)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model has an interface for, in the canonical order."""
        return tuple(m for m in MODALITIES if self.interface_config(m) is not None)

    def interface_config(self, modality: str) -> XLLMInterfaceConfig | None:
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; expected one of {MODALITIES}.")
        return getattr(self, f"{modality}_interface_config")

    def encoder_config(self, modality: str) -> PreTrainedConfig | None:
        return getattr(self, ENCODER_OF_MODALITY[modality])

    def placeholder_token_id(self, modality: str) -> int | None:
        return getattr(self, f"{modality}_token_id")

    def _check_modality(self, modality: str) -> None:
        interface = self.interface_config(modality)
        encoder_field = ENCODER_OF_MODALITY[modality]
        encoder = getattr(self, encoder_field)
        if encoder is None:
            raise ValueError(
                f"`{modality}_interface_config` is set but `{encoder_field}` is None: the {modality} interface "
                "needs an encoder."
            )
        token_id = self.placeholder_token_id(modality)
        if token_id is None:
            raise ValueError(f"`{modality}_token_id` must be set when the model has a {modality} interface.")
        vocab_size = self.text_config.vocab_size
        if not 0 <= token_id < vocab_size:
            raise ValueError(
                f"`{modality}_token_id` must index the LLM vocabulary (size {vocab_size}), got {token_id}."
            )
        encoder_width = encoder_hidden_size(encoder)
        if interface.encoder_hidden_size is None:
            interface.encoder_hidden_size = encoder_width
        elif interface.encoder_hidden_size != encoder_width:
            raise ValueError(
                f"`{modality}_interface_config.encoder_hidden_size` is {interface.encoder_hidden_size} but "
                f"`{encoder_field}` produces features of width {encoder_width}."
            )
        llm_width = self.text_config.hidden_size
        if interface.output_hidden_size is None:
            interface.output_hidden_size = llm_width
        elif interface.output_hidden_size != llm_width:
            raise ValueError(
                f"`{modality}_interface_config.output_hidden_size` is {interface.output_hidden_size} but the LLM "
                f"(`text_config.hidden_size`) is {llm_width} wide."
            )
        if interface.kind == "cformer" and modality != "speech":
            raise ValueError(
                f"`{modality}_interface_config.kind` is 'cformer', which only the speech interface uses."
            )


def encoder_hidden_size(encoder_config: PreTrainedConfig) -> int:
    """Width of the features an encoder produces (`d_model` for Whisper-style configs)."""
    for name in ("hidden_size", "d_model"):
        if getattr(encoder_config, name, None) is not None:
            return getattr(encoder_config, name)
    raise ValueError(f"Cannot find the feature width of encoder config {type(encoder_config).__name__}.")


__all__ = ["DEFAULT_MODALITY_CUES", "MODALITIES", "XLLMConfig", "XLLMInterfaceConfig"]
