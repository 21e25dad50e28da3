"""X-LLM: frozen modality encoders -> trainable X2L interfaces -> a frozen LLM.

Layout follows transformers' LLaVA: `XLLMModel` (encoders, interfaces, LLM backbone) returns
hidden states; `XLLMForConditionalGeneration` adds the LM head, the loss and generation.

The forward pass is one straight path:
    text embeddings
    -> for each modality present: encoder -> interface -> features (items, tokens, llm_width)
    -> features written over that modality's placeholder tokens
    -> the LLM.
"""

import copy
import inspect
import os
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.cache_utils import Cache
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import BaseModelOutputWithPast, BaseModelOutputWithPooling, ModelOutput
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.blip_2.modeling_blip_2 import Blip2VisionModel
from transformers.models.instructblip.modeling_instructblip import InstructBlipVisionModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_xllm import XLLMConfig, XLLMInterfaceConfig
from .model_modalities import (
    MODALITIES,
    encoder_config_key,
    interface_config_key,
    media_input_names,
    model_modality,
    placeholder,
    token_id_key,
)
from .modeling_beats import XLLMBeatsModel
from .modeling_cformer import CFormerInterface
from .modeling_linear_interface import LinearInterface
from .modeling_media import EncodedMedia, check_media, encode_media, encoded_from_cache, real_windows_mask
from .modeling_pointbert import XLLMPointBertModel
from .modeling_qformer import QFormerInterface
from .modeling_splice import splice_variable_length_features
from .modeling_x2l import FP32_MODULES
from .remote_code_llm import CODE_SOURCE, code_source, resolve_text_config, save_llm_code

# Encoders whose config class has no entry in `AutoModel`'s mapping.
ENCODER_CLASSES_OUTSIDE_AUTO = {
    "blip_2_vision_model": Blip2VisionModel,
    "instructblip_vision_model": InstructBlipVisionModel,
    "whisper": WhisperEncoder,  # `AutoModel` would build the whole encoder-decoder
    "xllm_beats": XLLMBeatsModel,
    "xllm_pointbert": XLLMPointBertModel,
}


# Encoders `from_pretrained(..., without_encoders=...)` leaves out (training from cached encoder features):
# read by `XLLMModel.__init__` while that call builds the model.
ENCODERS_LEFT_OUT: ContextVar[frozenset[str]] = ContextVar("xllm_encoders_left_out", default=frozenset())


def build_encoder(config: PreTrainedConfig) -> PreTrainedModel:
    """Any transformers encoder from its config, through `AutoModel` where the mapping knows it."""
    encoder_class = ENCODER_CLASSES_OUTSIDE_AUTO.get(config.model_type)
    if encoder_class is not None:
        return encoder_class._from_config(config)
    return AutoModel.from_config(config)


def load_pretrained_encoder(path: str | os.PathLike, **kwargs) -> PreTrainedModel:
    """A pretrained encoder by local path or Hub id. For a composite checkpoint (CLIP, SigLIP,
    BLIP-2) the vision tower is taken out of it."""
    config = AutoConfig.from_pretrained(path, **kwargs)
    if (
        getattr(config, "vision_config", None) is not None
        and config.model_type not in ENCODER_CLASSES_OUTSIDE_AUTO
    ):
        composite = AutoModel.from_pretrained(path, **kwargs)
        return composite.vision_model
    encoder_class = ENCODER_CLASSES_OUTSIDE_AUTO.get(config.model_type, AutoModel)
    return encoder_class.from_pretrained(path, **kwargs)


def build_interface(config: XLLMInterfaceConfig) -> nn.Module:
    if config.kind == "qformer":
        return QFormerInterface(config)
    if config.kind == "cformer":
        return CFormerInterface(config)
    if config.kind == "linear":
        return LinearInterface(config)
    raise ValueError(f"Interface kind {config.kind!r} is not available in this model.")


def media_inputs(kwargs: dict, **named: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The media tensors of a `forward` call, by input name: the named ones (the signature's) and any
    other modality's inputs in `kwargs` (popped from it), as the modality table names them."""
    inputs = {name: value for name, value in named.items() if value is not None}
    for name in media_input_names().intersection(kwargs):
        value = kwargs.pop(name)
        if value is not None:
            inputs[name] = value
    return inputs


class MediaInputs(NamedTuple):
    """One modality's tensors in a `forward` call: the media (or, precomputed, `encoded`: what its
    encoder gives), its window or attention mask, and (variable-length media in training) the target
    token counts."""

    values: torch.Tensor | None
    mask: torch.Tensor | None = None
    target_lengths: torch.Tensor | None = None
    encoded: EncodedMedia | None = None


def media_by_modality(
    inputs: dict[str, torch.Tensor], encoded: dict[str, EncodedMedia] | None = None
) -> dict[str, MediaInputs]:
    """Group input tensors by modality, in table order, with the precomputed encoder features of the
    modalities that have them; a mask without its media is a ValueError, and so is a modality given
    both as media and as encoder features."""
    encoded = encoded or {}
    media = {}
    for modality, row in MODALITIES.items():
        if modality in encoded:
            if row.input_name in inputs:
                raise ValueError(
                    f"The {modality} media came both as `{row.input_name}` and as `encoder_features`; give one."
                )
            media[modality] = MediaInputs(None, None, inputs.get(row.target_lengths_name), encoded[modality])
        elif row.input_name in inputs:
            media[modality] = MediaInputs(
                inputs[row.input_name], inputs.get(row.mask_name), inputs.get(row.target_lengths_name)
            )
        else:
            orphans = [name for name in row.input_names if name in inputs]
            if orphans:
                raise ValueError(f"`{orphans[0]}` was given without `{row.input_name}`.")
    return media


def item_rows(placeholder_mask: torch.Tensor, tokens_per_item: torch.Tensor) -> torch.Tensor:
    """Batch row of each media item, read from the first of its placeholder tokens (row-major
    order, the order in which `masked_scatter` fills placeholders)."""
    placeholder_rows = torch.nonzero(placeholder_mask)[:, 0]
    first_tokens = tokens_per_item.cumsum(0) - tokens_per_item
    return placeholder_rows[first_tokens]


def check_placeholder_count(
    modality: str, placeholder_mask: torch.Tensor, tokens_per_item: torch.Tensor
) -> None:
    """The one check that the text holds exactly the placeholders its media fill."""
    num_placeholders, num_tokens = int(placeholder_mask.sum()), int(tokens_per_item.sum())
    if num_placeholders != num_tokens:
        token = placeholder(modality)
        raise ValueError(
            f"The text has {num_placeholders} {modality} placeholder tokens but the {len(tokens_per_item)} "
            f"{modality} input(s) in `{model_modality(modality).input_name}` give "
            f"{num_tokens} features. Build "
            f"the inputs with XLLMProcessor, which expands each {token} to the right length, and give one "
            f"{token} per {modality} input."
        )


def real_tokens(features: "XLLMModalityFeatures") -> torch.Tensor:
    """(total tokens, llm_width): every item's tokens in item order, without the padding beyond its length."""
    positions = torch.arange(features.token_embeddings.shape[1], device=features.token_embeddings.device)
    return features.token_embeddings[positions.unsqueeze(0) < features.token_lengths.unsqueeze(1)]


class XLLMOutput(ModelOutput):
    """A `ModelOutput` whose attribute writes find their field in the class's field table.

    `ModelOutput.__setattr__` rebuilds the set of field names at every write, so building an output costs
    fields x fields steps; for our 10-field outputs, built twice per decoding step, that was the largest
    Python cost of a step (more than the rest of our forward). Same behaviour: a field set to a value other
    than None becomes a key, any other attribute does not.
    """

    def __setattr__(self, name: str, value) -> None:
        if value is not None and name in self.__dataclass_fields__:
            OrderedDict.__setitem__(self, name, value)
        object.__setattr__(self, name, value)

    def __post_init__(self) -> None:
        # The dataclass `__init__` has already made every field given a value a key (`__setattr__` above), which
        # is all that `ModelOutput.__post_init__` does with such outputs; its other case (the first field given
        # key/value pairs and nothing else) is left to it. The pytree registration happened at class creation.
        first, *others = self.__dataclass_fields__
        if all(self.__dict__[name] is None for name in others):
            super().__post_init__()


@dataclass
class XLLMModalityFeatures(XLLMOutput):
    """What one modality's media become in the LLM's input space.

    token_embeddings (items, max_tokens, llm_width): interface outputs, zero beyond each item's length.
    token_lengths (items,): the LLM tokens of each item (queries x real frames or windows; CIF's count).
    quantity_loss: CIF's quantity loss when target lengths were given (variable-length media only).
    alphas (items, frames): CIF's firing weights (variable-length media only).
    """

    token_embeddings: torch.Tensor | None = None
    token_lengths: torch.Tensor | None = None
    quantity_loss: torch.Tensor | None = None
    alphas: torch.Tensor | None = None


@dataclass
class XLLMModelOutputWithPast(XLLMOutput, BaseModelOutputWithPast):
    """`BaseModelOutputWithPast` plus the interface outputs of each modality present in the input.

    modality_features (`dict[str, torch.Tensor]`): modality -> (items, tokens, llm_width).
    attention_mask, position_ids, labels: the sequence as the LLM saw it, returned when speech
        tokens were spliced in (their number is only known inside the model), so that trainers
        and `generate` continue from the lengthened sequence.
    quantity_loss: CIF's quantity loss weighted by the interface's `quantity_loss_weight`, when target
        lengths of variable-length media were given.
    """

    modality_features: dict[str, torch.Tensor] | None = None
    attention_mask: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    quantity_loss: torch.Tensor | None = None


@dataclass
class XLLMCausalLMOutputWithPast(XLLMOutput):
    """Language-modelling outputs of [`XLLMForConditionalGeneration`]."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    modality_features: dict[str, torch.Tensor] | None = None
    attention_mask: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    quantity_loss: torch.Tensor | None = None


# What a quantization config must leave in full precision: everything but the LLM's own layers. Module names
# are matched from the start (`model.encoders` in `XLLMForConditionalGeneration`, `encoders` in `XLLMModel`).
UNQUANTIZED_MODULES = ("encoders", "interfaces", "model.encoders", "model.interfaces", "lm_head")


def llm_only_quantization(quantization_config):
    """A copy of `quantization_config` (a transformers quantization config or its dict) that quantizes the LLM
    only: `UNQUANTIZED_MODULES` join its skip modules (`llm_int8_skip_modules` for bitsandbytes,
    `modules_to_not_convert` for other quantizers), so encoders, interfaces, queries and LayerNorms stay in
    full precision. (Given skip modules, transformers adds no default ones, such as the LM head.)"""
    from transformers.quantizers.auto import AutoQuantizationConfig

    if isinstance(quantization_config, dict):
        quantization_config = AutoQuantizationConfig.from_dict(quantization_config)
    quantization_config = copy.deepcopy(quantization_config)
    for field_name in ("llm_int8_skip_modules", "modules_to_not_convert"):
        if hasattr(quantization_config, field_name):
            given = list(getattr(quantization_config, field_name) or ())
            setattr(
                quantization_config, field_name, [*given, *(m for m in UNQUANTIZED_MODULES if m not in given)]
            )
            return quantization_config
    raise ValueError(
        "`quantization_config` must name the modules it leaves unquantized (`llm_int8_skip_modules` or "
        f"`modules_to_not_convert`), so that only the LLM is quantized; {type(quantization_config).__name__} has neither."
    )


# What transformers' `create_and_tag_model_card` writes into the card it makes for a repository without one.
GENERIC_CARD_TEXT = "This model card has been automatically generated."


class XLLMPreTrainedModel(PreTrainedModel):
    config: XLLMConfig
    base_model_prefix = "model"
    input_modalities = (
        *dict.fromkeys(row.transformers_modality for row in MODALITIES.values() if row.transformers_modality),
        "text",
    )
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values"]
    _no_split_modules = ["QFormerLayer"]
    _keep_in_fp32_modules_strict = FP32_MODULES
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: XLLMConfig, *inputs, **kwargs):
        # An LLM running its own code gets its classes from the folder `from_pretrained` reads (remote_code_llm.py).
        config.text_config = resolve_text_config(config.text_config, CODE_SOURCE.get())
        super().__init__(config, *inputs, **kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with the default freezing applied again: loading
        replaces every parameter by a new, trainable one, which would unfreeze encoders and LLM.
        Weights load only from safetensors unless `use_safetensors=False` is passed (then transformers
        reads a pickled `.bin` with `torch.load(weights_only=True)`). A truncated or corrupt safetensors
        file is a ValueError that says so (safetensors' own error only says its header could not be read).

        `without_encoders` (names of `config.encoders`, e.g. `("vision",)`) builds the model without those
        encoders and does not load their weights: for training from cached encoder features. Such a model
        takes those modalities' `encoder_features` only; `save_pretrained` writes the left-out encoders'
        weights back from the folder they were not loaded from, so its folders stay complete.

        `quantization_config` (e.g. `BitsAndBytesConfig(load_in_4bit=True)`) quantizes the LLM only: the
        encoders, interfaces and LM head join its skip modules (`llm_only_quantization`).

        An LLM that runs its own code (saved with its code files and `auto_map`) needs `trust_remote_code=True`,
        also through the Auto classes; its classes then come from this folder's code."""
        # Imported here: files that travel with checkpoints import only torch and transformers at the top.
        from safetensors import SafetensorError

        kwargs.setdefault("use_safetensors", True)
        if kwargs.get("quantization_config") is not None:
            kwargs["quantization_config"] = llm_only_quantization(kwargs["quantization_config"])
        left_out = ENCODERS_LEFT_OUT.set(frozenset(kwargs.pop("without_encoders", ())))
        code_from = CODE_SOURCE.set(
            code_source(args[0] if args else kwargs.get("pretrained_model_name_or_path"), kwargs)
        )
        try:
            loaded = super().from_pretrained(*args, **kwargs)
        except SafetensorError as error:
            source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            raise ValueError(
                f"`pretrained_model_name_or_path` ({source}) must hold complete safetensors weights, but a weights "
                f"file is truncated or corrupt ({error}); save or download it again."
            ) from error
        finally:
            ENCODERS_LEFT_OUT.reset(left_out)
            CODE_SOURCE.reset(code_from)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, info) with output_loading_info
        base = getattr(model, "model", model)
        if base.encoders_left_out:
            base.encoder_weights_source = str(
                args[0] if args else kwargs.get("pretrained_model_name_or_path")
            )
        model.freeze_defaults()
        return loaded

    # `write_model_card(save_directory, config)`, set by `xllm.auto_registration.register_auto_classes` where the
    # package is installed (this file also runs as remote code, without the card template).
    model_card_writer = None

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """`PreTrainedModel.save_pretrained`, plus the model card (README.md) when a card writer is
        registered and the folder has no card yet (a richer one, e.g. with evaluation results, is kept).
        Encoders left out at loading (`without_encoders`) are written from the folder they came from; an LLM that
        runs its own code has its code files copied in (`save_llm_code`)."""
        base = getattr(self, "model", self)
        if base.encoders_left_out:
            state_dict = kwargs.pop("state_dict", None) or self.state_dict()
            state_dict.update(base.left_out_encoder_weights(prefix="model." if base is not self else ""))
            kwargs["state_dict"] = state_dict
        if self.is_remote_code():  # the other Auto classes that load this folder (pipelines read them)
            module = type(self).__module__.rsplit(".", 1)[-1]
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": f"{module}.XLLMModel",
                "AutoModelForImageTextToText": f"{module}.XLLMForConditionalGeneration",
            }
        save_llm_code(base.language_model, self.config.text_config, save_directory)
        super().save_pretrained(save_directory, *args, **kwargs)
        card = os.path.join(save_directory, "README.md")
        if self.model_card_writer is not None and not os.path.isfile(card):
            self.model_card_writer(save_directory, self.config)

    def _upload_modified_files(self, working_dir: str | os.PathLike, repo_id: str, *args, **kwargs):
        """`push_to_hub` writes transformers' generic card over ours when the repository has no card yet:
        ours is written back, with the generic card's tags. A card the repository already has is kept."""
        card = os.path.join(working_dir, "README.md")
        if self.model_card_writer is not None and os.path.isfile(card):
            from huggingface_hub import ModelCard

            pushed = ModelCard.load(card)
            if GENERIC_CARD_TEXT in pushed.text:
                ours = self.model_card_writer(working_dir, self.config, model_name=repo_id)
                ours.data.tags = list(dict.fromkeys([*(ours.data.tags or []), *(pushed.data.tags or [])]))
                ours.save(card)
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)

    def freeze_defaults(self) -> None:
        """Freeze what X-LLM never trains by default: the encoders and the LLM (with its head)."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> "XLLMPreTrainedModel":
        """`nn.Module.train`, except that frozen encoders stay in eval mode (as in BLIP-2): training
        would switch on their dropout and let their BatchNorm layers (Parakeet, PointBERT) use and
        update batch statistics, so a frozen encoder would change and depend on the batch."""
        super().train(mode)
        base = getattr(self, "model", self)
        for encoder in base.encoders.values():
            if not any(parameter.requires_grad for parameter in encoder.parameters()):
                encoder.eval()
        return self

    def component(self, name: str) -> nn.Module:
        """A component by name: `encoders`, `encoders.vision`, `interfaces`, `interfaces.image`,
        `language_model`, `lm_head`."""
        for root in (self, getattr(self, "model", None)):
            if root is not None and isinstance(getattr(root, name.split(".")[0], None), nn.Module):
                return root.get_submodule(name)
        raise ValueError(
            f"Unknown component {name!r}; expected one of {list(self.trainable_parameter_report())}."
        )

    def freeze(self, *names: str) -> None:
        """Stop gradients to the named components (see `component`)."""
        for name in names:
            self.component(name).requires_grad_(False)

    def unfreeze(self, *names: str) -> None:
        for name in names:
            self.component(name).requires_grad_(True)

    def trainable_parameter_report(self) -> dict[str, dict[str, int]]:
        """Trainable and total parameter counts per component (each encoder and interface apart); an
        encoder left out at loading (`without_encoders`) is listed with `"loaded": False`."""
        base = getattr(self, "model", self)
        components = {f"encoders.{k}": v for k, v in base.encoders.items()}
        components.update({f"interfaces.{k}": v for k, v in base.interfaces.items()})
        components["language_model"] = base.language_model
        if isinstance(getattr(self, "lm_head", None), nn.Module):
            components["lm_head"] = self.lm_head
        report = {}
        for name, module in components.items():
            parameters = list(module.parameters())
            report[name] = {
                "trainable": sum(p.numel() for p in parameters if p.requires_grad),
                "total": sum(p.numel() for p in parameters),
            }
        for name in base.encoders_left_out:  # training from cached features: never built
            report[f"encoders.{name}"] = {"trainable": 0, "total": 0, "loaded": False}
        return report


class XLLMModel(XLLMPreTrainedModel):
    """Encoders, one interface per modality and the LLM backbone (no LM head)."""

    def __init__(self, config: XLLMConfig):
        super().__init__(config)
        needed = {model_modality(m).encoder for m in config.modalities}
        self.encoders_left_out = tuple(sorted(needed & ENCODERS_LEFT_OUT.get()))
        self.encoder_weights_source = None  # the folder the left-out encoders' weights stay in
        self.encoders = nn.ModuleDict(
            {
                name: build_encoder(getattr(config, encoder_config_key(name)))
                for name in sorted(needed - set(self.encoders_left_out))
            }
        )
        if self.encoders_left_out:  # their weights in the checkpoint are expected to go unused
            self._keys_to_ignore_on_load_unexpected = [
                rf"encoders\.{name}\." for name in self.encoders_left_out
            ]
        self.interfaces = nn.ModuleDict(
            {m: build_interface(config.interface_config(m)) for m in config.modalities}
        )
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()
        self.freeze_defaults()

    def freeze_defaults(self) -> None:
        self.freeze("encoders", "language_model")

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def encoder_for(self, modality: str) -> PreTrainedModel:
        name = model_modality(modality).encoder
        if name in self.encoders_left_out:
            raise ValueError(
                f"The {name} encoder was left out of this model (`without_encoders`, training from cached encoder "
                f"features): pass the {modality} media as `encoder_features`."
            )
        return self.encoders[name]

    def left_out_encoder_tensors(self, name: str):
        """(key within the encoder, tensor) of a left-out encoder, read one by one from the folder it was
        not loaded from."""
        from safetensors import safe_open

        files = sorted(Path(self.encoder_weights_source).glob("*.safetensors"))
        if not files:
            raise ValueError(
                f"The left-out {name} encoder must be read back from {self.encoder_weights_source}, which holds "
                "no safetensors weights."
            )
        prefix = f"model.encoders.{name}."
        for path in files:
            with safe_open(path, framework="pt") as file:
                for key in file.keys():
                    if key.startswith(prefix):
                        yield key.removeprefix(prefix), file.get_tensor(key)

    def left_out_encoder_weights(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The weights of every left-out encoder, keyed as this model's state dict (after `prefix`)."""
        return {
            f"{prefix}encoders.{name}.{key}": tensor
            for name in self.encoders_left_out
            for key, tensor in self.left_out_encoder_tensors(name)
        }

    def _require_modality(self, modality: str) -> None:
        if modality not in self.interfaces:
            raise ValueError(
                f"This model has no {modality} interface (it has: {', '.join(self.interfaces) or 'none'})."
            )

    def encode_media(
        self, modality: str, media: torch.Tensor, mask: torch.Tensor | None = None, **encoder_kwargs
    ) -> EncodedMedia:
        """The frozen encoder's features that `modality`'s interface reads (see `modeling_media.encode_media`)."""
        self._require_modality(modality)
        return encode_media(
            self.encoder_for(modality),
            self.config.interface_config(modality),
            modality,
            media,
            mask,
            **encoder_kwargs,
        )

    def get_modality_features(
        self,
        modality: str,
        media: torch.Tensor,
        mask: torch.Tensor | None = None,
        qformer_input_ids: torch.Tensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        target_lengths: torch.Tensor | None = None,
        encoded: EncodedMedia | None = None,
    ) -> XLLMModalityFeatures:
        """The one way from a modality's media to its embeddings in the LLM's input space.

        `media` and `mask` follow the modality's layout (`model_modalities.py`): images
        `(images, channels, height, width)`, videos `(videos, frames, ...)`, audio `(audios, windows, ...)`
        with `mask` marking real windows, point clouds `(clouds, points, channels)`, speech as its
        encoder's input with `mask` its attention mask. Every real encoder input of every item goes
        through the encoder and the interface in one batch; each reads its item's instruction
        (`qformer_input_ids`, one row per item). `target_lengths` (variable-length media, training):
        the transcripts' token counts, which CIF then fires. `encoded` replaces `media` and `mask` with
        the encoder's features computed beforehand (`encoder_features` of `forward`).
        """
        if encoded is None:
            encoded = self.encode_media(modality, media, mask)
        media_items = len(encoded.inputs_per_item)
        interface = self.interfaces[modality]
        if model_modality(modality).layout == "sequence":
            output = interface(encoded.features, encoded.frame_mask, target_lengths)
            return XLLMModalityFeatures(
                output.token_embeddings, output.token_lengths, output.quantity_loss, output.alphas
            )
        if qformer_input_ids is not None:
            if qformer_input_ids.shape[0] != media_items:
                raise ValueError(
                    f"`qformer_input_ids` must have one row per {modality} item ({media_items}), got "
                    f"{qformer_input_ids.shape[0]}."
                )
            qformer_input_ids = qformer_input_ids.repeat_interleave(encoded.inputs_per_item, dim=0)
            if qformer_attention_mask is not None:
                qformer_attention_mask = qformer_attention_mask.repeat_interleave(
                    encoded.inputs_per_item, dim=0
                )
        time_kwargs = {}
        if interface.config.frame_positions:  # video time: each frame's queries read the whole video
            frames = encoded.inputs_per_item.unique()
            if len(frames) != 1:
                raise ValueError(
                    f"An interface with `frame_positions` reads whole {modality} items, which must have equally "
                    f"many real frames or windows in one batch; got {encoded.inputs_per_item.tolist()}."
                )
            time_kwargs["frames_per_item"] = int(frames[0])
        window_tokens = interface(encoded.features, qformer_input_ids, qformer_attention_mask, **time_kwargs)
        # (real windows, queries, llm_width) -> (items, windows * queries, llm_width), zeros for padded windows
        if len(window_tokens) == encoded.window_mask.numel():  # every window real: a view, no copy
            per_item = window_tokens.view(*encoded.window_mask.shape, *window_tokens.shape[1:])
        else:
            per_item = window_tokens.new_zeros(*encoded.window_mask.shape, *window_tokens.shape[1:])
            per_item[encoded.window_mask] = window_tokens
        return XLLMModalityFeatures(per_item.flatten(1, 2), encoded.inputs_per_item * window_tokens.shape[1])

    @can_return_tuple
    def get_media_features(
        self,
        modality: str,
        media: torch.Tensor,
        mask: torch.Tensor | None = None,
        qformer_input_ids: torch.Tensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """A fixed-length modality's features in transformers' form (what LLaVA's `get_image_features` returns):

        last_hidden_state: the encoder's last layer per item, `(items, tokens, encoder_width)` for images and
            clouds, `(items, windows, tokens, encoder_width)` for videos and audio (zeros for padded windows);
        hidden_states / attentions: the encoder's, one row per encoder input (frame, window), when asked for
            (`output_hidden_states` / `output_attentions`, or the encoder config's settings);
        pooler_output: the interface outputs, `(items, tokens, llm_width)` (what `forward` writes over the
            placeholders, with `qformer_input_ids` one instruction row per item).

        Other keyword arguments go to the encoder.
        """
        self._require_modality(modality)
        if model_modality(modality).layout == "sequence":
            raise ValueError(f"{modality} features have a variable length: use `get_{modality}_features`.")
        encoder_config = self.encoder_for(modality).config
        output_hidden_states = kwargs.pop("output_hidden_states", None)
        if output_hidden_states is None:
            output_hidden_states = encoder_config.output_hidden_states
        kwargs.setdefault("output_attentions", encoder_config.output_attentions)
        encoded = self.encode_media(
            modality, media, mask, output_hidden_states=output_hidden_states, **kwargs
        )
        features = self.get_modality_features(
            modality, media, mask, qformer_input_ids, qformer_attention_mask, encoded=encoded
        )
        encoder_outputs = encoded.encoder_outputs
        last_layer = encoder_outputs.last_hidden_state  # (real encoder inputs, tokens, encoder_width)
        per_item = last_layer.new_zeros(*encoded.window_mask.shape, *last_layer.shape[1:])
        per_item[encoded.window_mask] = last_layer
        if model_modality(modality).layout == "single":
            per_item = per_item.squeeze(1)
        return BaseModelOutputWithPooling(
            last_hidden_state=per_item,
            pooler_output=features.token_embeddings,
            hidden_states=encoder_outputs.hidden_states if output_hidden_states else None,
            attentions=encoder_outputs.attentions if kwargs["output_attentions"] else None,
        )

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        qformer_input_ids: torch.Tensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """(images, channels, height, width) -> `pooler_output` (images, num_query_tokens, llm_width); one
        instruction row per image. See `get_media_features`."""
        return self.get_media_features(
            "image", pixel_values, None, qformer_input_ids, qformer_attention_mask, **kwargs
        )

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        qformer_input_ids: torch.Tensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """(videos, frames, channels, height, width) -> `pooler_output` (videos, frames * num_query_tokens,
        llm_width).

        Every frame goes through the encoder and the video Q-Former in one batch (the instruction
        repeated per frame); per-frame query outputs are concatenated in time order.
        """
        return self.get_media_features(
            "video", pixel_values_videos, None, qformer_input_ids, qformer_attention_mask, **kwargs
        )

    def get_audio_features(
        self,
        audio_features: torch.Tensor,
        audio_window_mask: torch.Tensor | None = None,
        qformer_input_ids: torch.Tensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """(audios, windows, *window_input) -> `pooler_output` (audios, windows * num_query_tokens, llm_width).

        Each window (5.12 s for BEATs) goes through the encoder and the audio Q-Former; outputs
        are concatenated in time order. Padded windows (`audio_window_mask` False) give zeros, which
        `forward` leaves out of the sequence.
        """
        return self.get_media_features(
            "audio", audio_features, audio_window_mask, qformer_input_ids, qformer_attention_mask, **kwargs
        )

    def get_point_cloud_features(
        self,
        point_clouds: torch.Tensor,
        qformer_input_ids: torch.Tensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """(clouds, points, 3 or 6) -> `pooler_output` (clouds, num_query_tokens, llm_width)."""
        return self.get_media_features(
            "point_cloud", point_clouds, None, qformer_input_ids, qformer_attention_mask, **kwargs
        )

    def get_speech_features(
        self,
        speech_features: torch.Tensor,
        speech_attention_mask: torch.Tensor | None = None,
        speech_target_lengths: torch.Tensor | None = None,
    ) -> XLLMModalityFeatures:
        """Speech encoder input -> token-level embeddings in the LLM space and their lengths.

        `speech_features` is what the speech encoder's own feature extractor produces (fbank
        frames, Whisper's 30 s log-mel, or a raw waveform); `speech_attention_mask` marks its real
        part; `speech_target_lengths` (training) are the transcripts' token counts.
        """
        return self.get_modality_features(
            "speech", speech_features, speech_attention_mask, target_lengths=speech_target_lengths
        )

    def item_samples(
        self, modality: str, input_ids: torch.Tensor, windows_per_item: torch.Tensor
    ) -> torch.Tensor:
        """(items,) the sample of `input_ids` each media item belongs to, from its placeholders; the
        one check that the text holds as many placeholders as the items fill (`windows_per_item`: each
        item's real frames or windows; one for an image, a cloud or an utterance)."""
        placeholder_mask = input_ids == self.config.placeholder_token_id(modality)
        windows_per_item = windows_per_item.to(input_ids.device)
        if model_modality(modality).layout == "sequence":
            tokens_per_item = torch.ones_like(windows_per_item)  # one placeholder, CIF decides the length
        else:
            tokens_per_item = windows_per_item * self.interfaces[modality].num_output_tokens
        check_placeholder_count(modality, placeholder_mask, tokens_per_item)
        return item_rows(placeholder_mask, tokens_per_item)

    def windows_per_item(self, modality: str, given: "MediaInputs") -> torch.Tensor:
        """(items,) real frames or windows of each item, from its media or its precomputed features."""
        if given.encoded is not None:
            return given.encoded.inputs_per_item
        if model_modality(modality).layout == "sequence":
            return torch.ones(len(given.values), dtype=torch.long, device=given.values.device)
        return real_windows_mask(modality, given.values, given.mask).sum(1)

    def _placeholder_features(
        self,
        modality: str,
        given: MediaInputs,
        input_ids: torch.Tensor,
        qformer_input_ids: torch.Tensor | None,
        qformer_attention_mask: torch.Tensor | None,
    ) -> XLLMModalityFeatures:
        """A modality's features for the placeholders of `input_ids`, each item reading the instruction
        of the sample its placeholders are in; the tensors and then the placeholder count are checked
        before any encoding."""
        self._require_modality(modality)
        if given.encoded is None:
            check_media(modality, self.encoder_for(modality), given.values, given.mask)
        rows = self.item_samples(modality, input_ids, self.windows_per_item(modality, given))
        if model_modality(modality).layout == "sequence":
            return self.get_modality_features(
                modality, given.values, given.mask, target_lengths=given.target_lengths, encoded=given.encoded
            )
        if qformer_input_ids is not None:
            qformer_input_ids = qformer_input_ids[rows]
            qformer_attention_mask = None if qformer_attention_mask is None else qformer_attention_mask[rows]
        return self.get_modality_features(
            modality,
            given.values,
            given.mask,
            qformer_input_ids,
            qformer_attention_mask,
            encoded=given.encoded,
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_window_mask: torch.Tensor | None = None,
        point_clouds: torch.Tensor | None = None,
        mm_encoder_outputs: dict[str, torch.Tensor] | None = None,
        encoder_features: dict[str, dict[str, torch.Tensor]] | None = None,
        speech_features: torch.Tensor | None = None,
        speech_attention_mask: torch.Tensor | None = None,
        speech_target_lengths: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> XLLMModelOutputWithPast:
        r"""
        Media come under the names of the modality table (`model_modalities.MODALITIES`); a modality
        added to the table passes its tensors as keyword arguments of the same kind.

        pixel_values (`torch.Tensor` of shape `(images, channels, height, width)`): all images of the batch.
        pixel_values_videos (`torch.Tensor` of shape `(videos, frames, channels, height, width)`).
        qformer_input_ids (`torch.LongTensor` of shape `(batch, instruction_length)`): the instruction
            of each sample in the Q-Former's vocabulary (instruction-aware interfaces only).
        audio_features (`torch.Tensor` of shape `(audios, windows, *window_input)`), with
            `audio_window_mask` `(audios, windows)` marking real windows.
        point_clouds (`torch.Tensor` of shape `(clouds, points, 3 or 6)`).
        mm_encoder_outputs (`dict[str, torch.Tensor | BaseModelOutputWithPooling]`): precomputed interface
            outputs per modality, `(items, tokens, llm_width)`, used instead of running encoder and interface
            (what the `get_*_features` methods return, or their `pooler_output`; transformers' meaning of the name).
        inputs_embeds: instead of `input_ids`; with media, their placeholders are found where an embedding
            equals a placeholder token's (as LLaVA finds them).
        encoder_features (`dict[str, dict[str, torch.Tensor]]`): precomputed *encoder* features per
            modality, what the interface reads (the selected layer, before the interface's LayerNorm),
            used instead of running the frozen encoder: `{"features": (windows, tokens, encoder_width),
            "window_mask": (items, windows)}` for fixed-length media (every real frame or window of
            every item, item-major), `{"features": (items, frames, encoder_width), "frame_mask":
            (items, frames)}` for variable-length media; a feature cache gives them
            (`xllm.trainers.feature_cache`).
        speech_features (`torch.Tensor`): one row per `<speech>` placeholder, in the speech
            encoder's input format; `speech_attention_mask` marks real input.
        speech_target_lengths (`torch.LongTensor` of shape `(speech_items,)`): transcript token
            counts; in training CIF then fires exactly that many tokens.
        labels (`torch.LongTensor`): spliced along with variable-length tokens and returned aligned.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`.")
        encoded = {}
        for modality, cached in (encoder_features or {}).items():
            self._require_modality(modality)
            encoded[modality] = encoded_from_cache(modality, self.config.interface_config(modality), cached)
        media = media_by_modality(
            media_inputs(
                kwargs,
                pixel_values=pixel_values,
                pixel_values_videos=pixel_values_videos,
                audio_features=audio_features,
                audio_window_mask=audio_window_mask,
                point_clouds=point_clouds,
                speech_features=speech_features,
                speech_attention_mask=speech_attention_mask,
                speech_target_lengths=speech_target_lengths,
            ),
            encoded,
        )
        precomputed = {  # a `get_*_features` output or its `pooler_output`
            modality: outputs.pooler_output if isinstance(outputs, ModelOutput) else outputs
            for modality, outputs in (mm_encoder_outputs or {}).items()
        }
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # (batch, seq, llm_width)
        elif media or precomputed:
            input_ids = self.placeholder_ids_from_embeddings(inputs_embeds)
        if (
            qformer_input_ids is not None
            and input_ids is not None
            and len(qformer_input_ids) != len(input_ids)
        ):
            raise ValueError(
                f"`qformer_input_ids` must have one row per sample of `input_ids` ({len(input_ids)}), got "
                f"{len(qformer_input_ids)}."
            )
        variable_length = [m for m in (*precomputed, *media) if model_modality(m).layout == "sequence"]
        if any(m in precomputed for m in variable_length):
            raise ValueError(
                f"{variable_length[0].capitalize()} features have a variable length: pass "
                f"`{model_modality(variable_length[0]).input_name}`, not precomputed ones."
            )

        modality_features = {}
        for modality, features in precomputed.items():  # (items, tokens, llm_width)
            placeholder_mask = input_ids == self.config.placeholder_token_id(modality)
            check_placeholder_count(
                modality, placeholder_mask, torch.full((len(features),), features.shape[1])
            )
            inputs_embeds = inputs_embeds.masked_scatter(
                placeholder_mask.unsqueeze(-1), features.to(inputs_embeds.dtype)
            )
            modality_features[modality] = features
        spliced_media = {}
        for modality, given in media.items():
            if modality in precomputed:
                continue
            features = self._placeholder_features(
                modality, given, input_ids, qformer_input_ids, qformer_attention_mask
            )
            placeholder_mask = input_ids == self.config.placeholder_token_id(modality)
            modality_features[modality] = features.token_embeddings
            if model_modality(modality).layout == "sequence":
                spliced_media[modality] = (features, placeholder_mask)
                continue
            inputs_embeds = inputs_embeds.masked_scatter(
                placeholder_mask.unsqueeze(-1), real_tokens(features).to(inputs_embeds.dtype)
            )

        spliced, quantity_loss = {}, None
        if spliced_media:
            right_padded = attention_mask is not None and bool((attention_mask[:, -1] == 0).any())
            placeholder_mask, tokens, lengths = merge_by_position(spliced_media)
            inputs_embeds, attention_mask, position_ids, labels = splice_variable_length_features(
                inputs_embeds,
                placeholder_mask,
                attention_mask,
                tokens,
                lengths,
                labels,
                padding_side="right" if right_padded else "left",
            )
            spliced = {"attention_mask": attention_mask, "position_ids": position_ids, "labels": labels}
            quantity_loss = self.weighted_quantity_loss({m: f for m, (f, _) in spliced_media.items()})

        if position_ids is None and attention_mask is not None and attention_mask.ndim == 2:
            # Left padding must not shift positions: each sample counts from its first real token.
            past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past_length:]

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        return XLLMModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            modality_features=modality_features or None,
            quantity_loss=quantity_loss,
            **spliced,
        )

    def placeholder_ids_from_embeddings(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """(batch, seq) ids standing in for `input_ids` when only `inputs_embeds` came: each modality's
        placeholder id where the embedding is that placeholder token's embedding, -1 elsewhere."""
        ids = torch.full(inputs_embeds.shape[:2], -1, dtype=torch.long, device=inputs_embeds.device)
        embeddings = self.get_input_embeddings()
        for modality in self.config.modalities:
            token_id = self.config.placeholder_token_id(modality)
            token_embedding = embeddings(torch.tensor(token_id, device=inputs_embeds.device))
            ids[(inputs_embeds == token_embedding.to(inputs_embeds.dtype)).all(-1)] = token_id
        return ids

    def weighted_quantity_loss(self, features: dict[str, XLLMModalityFeatures]) -> torch.Tensor | None:
        """CIF's quantity losses, each weighted by its interface's `quantity_loss_weight` (None without
        target lengths)."""
        terms = [
            self.config.interface_config(modality).quantity_loss_weight * output.quantity_loss
            for modality, output in features.items()
            if output.quantity_loss is not None
        ]
        return sum(terms) if terms else None


def merge_by_position(
    spliced_media: dict[str, tuple[XLLMModalityFeatures, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All variable-length placeholders as one mask, with their items' tokens in placeholder order
    (row-major): (batch, seq) bool, (items, max_tokens, llm_width), (items,)."""
    masks = [mask for _, mask in spliced_media.values()]
    placeholder_mask = torch.stack(masks).any(0)
    width = max(features.token_embeddings.shape[1] for features, _ in spliced_media.values())
    positions, tokens, lengths = [], [], []
    for features, mask in spliced_media.values():
        positions.append(torch.nonzero(mask.flatten()).flatten())
        embeddings = features.token_embeddings
        tokens.append(torch.nn.functional.pad(embeddings, (0, 0, 0, width - embeddings.shape[1])))
        lengths.append(features.token_lengths)
    order = torch.cat(positions).argsort()
    return placeholder_mask, torch.cat(tokens)[order], torch.cat(lengths)[order]


def input_embedding_path(module: nn.Module) -> str:
    """Dotted name of the module's input-embedding layer (`embed_tokens`, `decoder.embed_tokens`, ...)."""
    embeddings = module.get_input_embeddings()
    for name, child in module.named_modules():
        if child is embeddings:
            return name
    raise ValueError(f"{type(module).__name__}.get_input_embeddings() is not one of its submodules.")


class XLLMForConditionalGeneration(XLLMPreTrainedModel, GenerationMixin):
    """[`XLLMModel`] with the LLM's language-modelling head: loss and `generate()`."""

    # Tensor parallelism: the (tied) head split by vocabulary, its logits gathered, as LLaVA's.
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: XLLMConfig):
        super().__init__(config)
        self.model = XLLMModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        embedding_name = input_embedding_path(self.model.language_model)
        self._tied_weights_keys = {"lm_head.weight": f"model.language_model.{embedding_name}.weight"}
        self.post_init()
        self.freeze_defaults()
        # Placeholders are input-only: a generated one would have no features to stand for.
        self.generation_config.suppress_tokens = [config.placeholder_token_id(m) for m in config.modalities]

    def freeze_defaults(self) -> None:
        self.model.freeze_defaults()
        self.freeze("lm_head")

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    @classmethod
    def from_pretrained_parts(
        cls,
        text_model: str | os.PathLike,
        encoders: dict[str, str | os.PathLike],
        interfaces: dict[str, XLLMInterfaceConfig],
        tokenizer=None,
        dtype: torch.dtype | str | None = None,
        device_map: str | dict | None = None,
        trust_remote_code: bool = False,
        quantization_config=None,
        **config_kwargs,
    ) -> "XLLMForConditionalGeneration":
        """Compose a model from separately pretrained parts, the way real users start.

        text_model: a causal LM (with its `lm_head`) by local path or Hub id (Vicuna, Llama, Qwen2, GLM, ...).
        encoders: encoder name -> checkpoint: `vision` (feeds image and video), `speech`, `audio`,
            `point_cloud`. Composite checkpoints (CLIP, SigLIP, BLIP-2) give their vision tower.
        interfaces: modality -> interface config (new, randomly initialised interfaces).
        tokenizer: the LLM's tokenizer (loaded from `text_model` when None); missing placeholder
            tokens are added to it, and the LLM's embeddings grow to cover them. Build the
            processor with this same tokenizer.
        dtype / device_map: as in `from_pretrained` (`device_map="auto"` splits across devices);
            learned queries and LayerNorms of the interfaces stay in fp32 under half precision.
        trust_remote_code: opt-in for an LLM that needs its own code; never enabled implicitly.
        quantization_config: quantizes the LLM only (e.g. `BitsAndBytesConfig(load_in_4bit=True,
            bnb_4bit_quant_type="nf4")`, QLoRA's frozen LLM). transformers' own quantized loading reads the LLM,
            so its unquantized weights are never all in memory at once; the composed model then takes the
            quantized weights as a pre-quantized checkpoint (`llm_only_quantization` keeps the rest unquantized).
        """
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(
            text_model, trust_remote_code=trust_remote_code
        )
        quantized = {}
        if quantization_config is not None:
            quantized = dict(quantization_config=quantization_config, dtype=dtype, device_map=device_map)
        language_model = AutoModelForCausalLM.from_pretrained(
            text_model, trust_remote_code=trust_remote_code, **quantized
        )
        if trust_remote_code:
            # `XLLMModel` builds its LLM with `AutoModel.from_config`, which asks for the consent again; map
            # the trusted config class to the backbone class just loaded, as transformers does for its own Auto class.
            AutoModel.register(type(language_model.config), type(language_model.base_model), exist_ok=True)
        placeholders = [placeholder(modality) for modality in interfaces]
        missing = [token for token in placeholders if token not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens(
                {"additional_special_tokens": missing}, replace_extra_special_tokens=False
            )
        if len(tokenizer) > language_model.config.vocab_size:
            language_model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        loaded_encoders = {name: load_pretrained_encoder(path) for name, path in encoders.items()}
        config = XLLMConfig(
            text_config=language_model.config,
            **{encoder_config_key(name): encoder.config for name, encoder in loaded_encoders.items()},
            **{interface_config_key(modality): interface for modality, interface in interfaces.items()},
            **{
                token_id_key(modality): tokenizer.convert_tokens_to_ids(placeholder(modality))
                for modality in interfaces
            },
            **config_kwargs,
        )
        if quantization_config is not None:  # the LLM's weights below are already quantized
            config.quantization_config = llm_only_quantization(
                language_model.config.quantization_config
            ).to_dict()
            vars(config.text_config).pop("quantization_config", None)  # said once, by the composite config
        state_dict = {
            f"model.language_model.{k}": v for k, v in language_model.base_model.state_dict().items()
        }
        state_dict["lm_head.weight"] = language_model.get_output_embeddings().weight
        for name, encoder in loaded_encoders.items():
            state_dict.update({f"model.encoders.{name}.{k}": v for k, v in encoder.state_dict().items()})
        for modality in config.modalities:  # fresh interfaces, built in fp32 so the dtype plan applies
            interface = build_interface(config.interface_config(modality))
            state_dict.update(
                {f"model.interfaces.{modality}.{k}": v for k, v in interface.state_dict().items()}
            )
        model = cls.from_pretrained(
            None, config=config, state_dict=state_dict, dtype=dtype, device_map=device_map
        )
        if quantization_config is not None:
            # The state dict above is in the model's own names and quantized layout: there is nothing to convert
            # back when saving. (transformers 5.23 keeps the quantizer's loading conversion, which has no reverse,
            # and `save_pretrained` of a model loaded from pre-quantized weights would raise NotImplementedError.)
            model._weight_conversions = []
        return model

    def _supports_mm_encoder_outputs(self) -> bool:
        # `generate` would otherwise pre-encode media with one instruction per *sample*; `forward`
        # encodes them at prefill, where each item is matched with its own sample's instruction.
        return False

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def get_image_features(self, pixel_values: torch.Tensor, *args, **kwargs) -> BaseModelOutputWithPooling:
        return self.model.get_image_features(pixel_values, *args, **kwargs)

    def get_video_features(
        self, pixel_values_videos: torch.Tensor, *args, **kwargs
    ) -> BaseModelOutputWithPooling:
        return self.model.get_video_features(pixel_values_videos, *args, **kwargs)

    def get_audio_features(self, audio_features: torch.Tensor, *args, **kwargs) -> BaseModelOutputWithPooling:
        return self.model.get_audio_features(audio_features, *args, **kwargs)

    def get_point_cloud_features(
        self, point_clouds: torch.Tensor, *args, **kwargs
    ) -> BaseModelOutputWithPooling:
        return self.model.get_point_cloud_features(point_clouds, *args, **kwargs)

    def get_speech_features(self, speech_features: torch.Tensor, **kwargs) -> XLLMModalityFeatures:
        return self.model.get_speech_features(speech_features, **kwargs)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_window_mask: torch.Tensor | None = None,
        point_clouds: torch.Tensor | None = None,
        mm_encoder_outputs: dict[str, torch.Tensor] | None = None,
        encoder_features: dict[str, dict[str, torch.Tensor]] | None = None,
        speech_features: torch.Tensor | None = None,
        speech_attention_mask: torch.Tensor | None = None,
        speech_target_lengths: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> XLLMCausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch, seq)`): next-token targets aligned with
            `input_ids`; -100 marks positions without loss (prompt, placeholders, padding). With
            speech, the model aligns them with the spliced sequence (returned as `labels`) and adds
            CIF's quantity loss (weighted by the interface's `quantity_loss_weight`).
        """
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            qformer_input_ids=qformer_input_ids,
            qformer_attention_mask=qformer_attention_mask,
            audio_features=audio_features,
            audio_window_mask=audio_window_mask,
            point_clouds=point_clouds,
            mm_encoder_outputs=mm_encoder_outputs,
            encoder_features=encoder_features,
            speech_features=speech_features,
            speech_attention_mask=speech_attention_mask,
            speech_target_lengths=speech_target_lengths,
            labels=labels,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,  # media of a modality added to the table come here too; the loss ignores them
        )
        if outputs.labels is not None:
            labels = outputs.labels
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)  # (batch, kept positions, vocab)
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
            if outputs.quantity_loss is not None:
                loss = loss + outputs.quantity_loss
        return XLLMCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            modality_features=outputs.modality_features,
            attention_mask=outputs.attention_mask,
            position_ids=outputs.position_ids,
            labels=outputs.labels,
            quantity_loss=outputs.quantity_loss,
        )

    def _expand_inputs_for_generation(
        self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None, **model_kwargs
    ):
        """transformers repeats every tensor row by row (beam search, several return sequences). Media
        tensors and precomputed encoder features hold one row per item (or per frame), not per sample:
        each sample's items are repeated together, in the order the placeholders of its copies read them."""
        media = {
            name: model_kwargs.pop(name)
            for row in MODALITIES.values()
            for name in row.input_names
            if model_kwargs.get(name) is not None
        }
        cached = model_kwargs.pop("encoder_features", None)
        expanded_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        if expand_size > 1:
            for modality, row in MODALITIES.items():
                if row.input_name in media:
                    given = MediaInputs(media[row.input_name], media.get(row.mask_name))
                    order = self.beam_item_order(
                        modality, input_ids, self.model.windows_per_item(modality, given), expand_size
                    )
                    media.update({name: media[name][order] for name in row.input_names if name in media})
            if cached:
                cached = {
                    modality: self.repeat_cached_items(modality, input_ids, value, expand_size)
                    for modality, value in cached.items()
                }
        if cached:
            model_kwargs["encoder_features"] = cached
        return expanded_ids, {**model_kwargs, **media}

    def beam_item_order(
        self, modality: str, input_ids: torch.Tensor, windows_per_item: torch.Tensor, expand_size: int
    ) -> list[int]:
        """Item indices with every sample's items repeated `expand_size` times, sample after sample."""
        samples = self.model.item_samples(modality, input_ids, windows_per_item)
        return [
            item
            for sample in range(len(input_ids))
            for _ in range(expand_size)
            for item in torch.nonzero(samples == sample).flatten().tolist()
        ]

    def repeat_cached_items(
        self, modality: str, input_ids: torch.Tensor, cached: dict[str, torch.Tensor], expand_size: int
    ) -> dict[str, torch.Tensor]:
        """`encoder_features[modality]` with each sample's items repeated for its copies."""
        encoded = encoded_from_cache(modality, self.config.interface_config(modality), cached)
        order = self.beam_item_order(modality, input_ids, encoded.inputs_per_item, expand_size)
        if model_modality(modality).layout == "sequence":
            return {"features": encoded.features[order], "frame_mask": encoded.frame_mask[order]}
        per_item = encoded.features.split(encoded.inputs_per_item.tolist())  # each item's windows
        return {
            "features": torch.cat([per_item[item] for item in order]),
            "window_mask": encoded.window_mask[order],
        }

    def _validate_model_kwargs(self, model_kwargs: dict) -> None:
        # `generate` accepts only keywords named in `forward`'s signature; a modality added to the table
        # passes its media through `**kwargs`, so the table's input names are valid too.
        table_inputs = media_input_names()
        super()._validate_model_kwargs({k: v for k, v in model_kwargs.items() if k not in table_inputs})

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool = False, **kwargs) -> dict:
        model_inputs = super().prepare_inputs_for_generation(
            *args, is_first_iteration=is_first_iteration, **kwargs
        )
        if not is_first_iteration and kwargs.get("use_cache", True):
            model_inputs.pop("encoder_features", None)  # media are in the KV cache after prefill
            for name in media_input_names().intersection(model_inputs):
                del model_inputs[name]
        return model_inputs

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs: dict, *args, **kwargs) -> dict:
        if outputs.attention_mask is not None and model_kwargs.get("use_cache", True):
            # Speech tokens were spliced in at prefill: continue from the lengthened sequence.
            model_kwargs["attention_mask"] = outputs.attention_mask
            model_kwargs["position_ids"] = outputs.position_ids
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)


# `generate` reads the signature of registered code's `forward` at every step (`prepare_inputs_for_generation`'s
# `cache_position` check for `register_for_auto_class` models); a precomputed one (which `inspect.signature` returns
# as is) spares rebuilding its 23 parameters each time.
XLLMForConditionalGeneration.forward.__signature__ = inspect.signature(XLLMForConditionalGeneration.forward)

__all__ = ["XLLMForConditionalGeneration", "XLLMModalityFeatures", "XLLMModel", "XLLMPreTrainedModel"]
