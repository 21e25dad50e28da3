"""From a modality's media tensors to the encoder features its interface reads: the one encoder path.

`encode_media` is used by the composite model (`forward` and the `get_*_features` methods) and by the
stage-1 heads, so every caller checks the same shape contract and sees the same features:

1. `check_media` checks what it is given against the modality's layout (see `model_modalities.py`) and
   the encoder's input (rank, channels, dtype, masks) and names the argument in its error;
2. every real encoder input of every item (an image, each frame, each audio window, an utterance) goes
   through the frozen encoder as one batch;
3. the interface's layer is selected, with or without the encoder's first (CLS) token.

For variable-length (`sequence`) media the mask of real encoder output frames is rebuilt from the true
input lengths: CIF must never integrate padded frames, each encoder family shortens its input
differently (conv subsampling, a conv feature extractor, a stride-2 conv), and Whisper pads every
input to 30 s and ignores the attention mask.
"""

from typing import NamedTuple

import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from .configuration_xllm import XLLMInterfaceConfig
from .model_modalities import ModelModality, model_modality

# An encoder's main input -> the ranks one encoder input may have and what its axes are.
ENCODER_INPUTS = {
    "pixel_values": ((3,), "(channels, height, width)"),
    "point_clouds": ((2,), "(points, channels)"),
    "input_features": ((2,), "two feature axes, e.g. (frames, mel bins)"),
    "input_values": ((1, 2), "(samples,) or a spectrogram (frames, bins)"),
}
# Leading axes a layout puts before one encoder input.
LEADING_AXES = {"single": "(items, ...)", "windows": "(items, windows, ...)", "sequence": "(items, ...)"}


class EncodedMedia(NamedTuple):
    """features: (encoder inputs, tokens, encoder_width), every real input of every item, item-major;
    inputs_per_item: (items,) encoder inputs each item has (1 for `single`, its real windows for `windows`);
    window_mask: (items, windows) the real windows (one per item for `single`), None for `sequence`;
    frame_mask: (items, tokens) real encoder output frames, `sequence` only."""

    features: torch.Tensor
    inputs_per_item: torch.Tensor
    window_mask: torch.Tensor | None = None
    frame_mask: torch.Tensor | None = None
    encoder_outputs: ModelOutput | None = None  # the encoder's own outputs, fixed-length media only


def interface_layer_only(config: XLLMInterfaceConfig) -> list[int]:
    """The `output_hidden_states` that keeps only the layer the interface reads: transformers' encoders
    return the others as None instead of holding every layer until the end of the forward (ViT-g: 40
    layers of `(images, 257, 1408)`); an encoder without that selection reads the list as True."""
    return [config.encoder_feature_layer]


def select_encoder_features(
    hidden_states: tuple[torch.Tensor, ...], config: XLLMInterfaceConfig
) -> torch.Tensor:
    """The encoder layer that feeds the interface, with or without its first (CLS) token."""
    features = hidden_states[config.encoder_feature_layer]  # (inputs, tokens, encoder_width)
    return features if config.encoder_keep_cls else features[:, 1:]


def leading_axes(row: ModelModality) -> int:
    return 2 if row.layout == "windows" else 1


def check_media(
    modality: str, encoder: PreTrainedModel, media: torch.Tensor, mask: torch.Tensor | None = None
) -> None:
    """The shape contract of a modality's media and mask; a ValueError names the argument, what it
    expected and what came."""
    row = model_modality(modality)
    name = row.input_name
    if not isinstance(media, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(media).__name__}.")
    if not media.is_floating_point():
        raise ValueError(f"`{name}` must hold floating-point values, got dtype {media.dtype}.")
    ranks, axes = ENCODER_INPUTS.get(encoder.main_input_name, ((media.ndim - leading_axes(row),), "..."))
    expected_ranks = [rank + leading_axes(row) for rank in ranks]
    if media.ndim not in expected_ranks or 0 in media.shape[: leading_axes(row)]:
        raise ValueError(
            f"`{name}` must be a {' or '.join(map(str, expected_ranks))}-dimensional tensor "
            f"{LEADING_AXES[row.layout]} whose encoder inputs are {axes} (the {modality} encoder "
            f"{type(encoder).__name__} reads `{encoder.main_input_name}`), got shape {tuple(media.shape)}."
        )
    check_channels(name, encoder, media)
    if mask is None:
        return
    mask_name = row.mask_name
    if not isinstance(mask, torch.Tensor) or mask.is_floating_point() or mask.is_complex():
        raise ValueError(
            f"`{mask_name}` must be a bool or integer tensor, got {getattr(mask, 'dtype', type(mask))}."
        )
    if row.layout == "windows":
        fits, expected = tuple(mask.shape) == tuple(media.shape[:2]), f"{tuple(media.shape[:2])}"
    else:  # one row per item, as long as the time axis of its input
        fits = mask.ndim == 2 and mask.shape[0] == media.shape[0] and mask.shape[1] in media.shape[1:]
        expected = f"({media.shape[0]}, time) with time one of the axes {tuple(media.shape[1:])}"
    if mask.ndim != 2 or not fits:
        raise ValueError(
            f"`{mask_name}` must have shape {expected} to match `{name}` of shape {tuple(media.shape)}, "
            f"got {tuple(mask.shape)}."
        )
    if row.layout == "windows":
        real = mask.bool()
        if not real[:, 0].all() or (real[:, 1:] & ~real[:, :-1]).any():
            raise ValueError(
                f"`{mask_name}` must mark each item's real windows first, at least one per item, got {mask.tolist()}."
            )


def check_channels(name: str, encoder: PreTrainedModel, media: torch.Tensor) -> None:
    """Images carry `num_channels` channels before height and width; point clouds `in_channels` last."""
    if encoder.main_input_name == "pixel_values":
        expected, found = getattr(encoder.config, "num_channels", None), media.shape[-3]
    elif encoder.main_input_name == "point_clouds":
        expected, found = getattr(encoder.config, "in_channels", None), media.shape[-1]
    else:
        return
    if expected is not None and found != expected:
        raise ValueError(
            f"`{name}` must have {expected} channels for the encoder {type(encoder).__name__}, got {found} "
            f"(shape {tuple(media.shape)})."
        )


def real_windows_mask(modality: str, media: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(items, windows) bool: the encoder inputs each fixed-length item has (an image or a cloud is one
    window; a video's frames are all real; a sound's real windows are its mask's)."""
    if mask is not None:
        return mask.bool()
    windows = media.shape[1] if model_modality(modality).layout == "windows" else 1
    return torch.ones(len(media), windows, dtype=torch.bool, device=media.device)


def encode_media(
    encoder: PreTrainedModel,
    interface_config: XLLMInterfaceConfig,
    modality: str,
    media: torch.Tensor,
    mask: torch.Tensor | None = None,
    **encoder_kwargs,
) -> EncodedMedia:
    """Check `media` (and its window or attention `mask`), run every real encoder input through the
    frozen encoder in one batch and select the features the interface reads (before its LayerNorm).
    `encoder_kwargs` (`output_attentions`; `output_hidden_states=True` to keep every layer) go to the
    encoder of fixed-length media."""
    check_media(modality, encoder, media, mask)
    row = model_modality(modality)
    if row.layout == "sequence":
        return encode_sequences(encoder, interface_config, media, mask)
    windows = media if row.layout == "windows" else media.unsqueeze(1)  # (items, windows, *encoder_input)
    window_mask = real_windows_mask(modality, media, mask)
    # (real windows, *encoder_input), item-major; without a mask every window is real, and a view spares
    # copying the whole batch (all the pixels of all the images)
    real_windows = windows.flatten(0, 1) if mask is None else windows[window_mask]
    encoder_kwargs["output_hidden_states"] = encoder_kwargs.get(
        "output_hidden_states"
    ) or interface_layer_only(interface_config)
    outputs = encoder(
        **{encoder.main_input_name: real_windows.to(encoder.dtype)}, return_dict=True, **encoder_kwargs
    )
    features = select_encoder_features(outputs.hidden_states, interface_config)
    return EncodedMedia(features, window_mask.sum(1), window_mask, encoder_outputs=outputs)


def encoded_from_cache(
    modality: str, interface_config: XLLMInterfaceConfig, cached: dict[str, torch.Tensor]
) -> EncodedMedia:
    """Encoder features computed beforehand (a feature cache; `forward`'s `encoder_features`), checked
    against the modality's layout and the interface's width: what `encode_media` would return."""
    row = model_modality(modality)
    name = f"encoder_features[{modality!r}]"
    mask_key = "frame_mask" if row.layout == "sequence" else "window_mask"
    features, mask = cached.get("features"), cached.get(mask_key)
    if not isinstance(features, torch.Tensor) or not features.is_floating_point() or features.ndim != 3:
        raise ValueError(
            f"`{name}['features']` must be a 3-dimensional float tensor, got {getattr(features, 'shape', features)}."
        )
    if features.shape[-1] != interface_config.encoder_hidden_size:
        raise ValueError(
            f"`{name}['features']` must be {interface_config.encoder_hidden_size} wide (the {modality} encoder's "
            f"width), got {features.shape[-1]}."
        )
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2:
        raise ValueError(
            f"`{name}['{mask_key}']` must be a 2-dimensional tensor, got {getattr(mask, 'shape', mask)}."
        )
    mask = mask.bool()
    if row.layout == "sequence":
        if tuple(mask.shape) != tuple(features.shape[:2]):
            raise ValueError(
                f"`{name}['frame_mask']` must have shape {tuple(features.shape[:2])}, got {tuple(mask.shape)}."
            )
        return EncodedMedia(
            features, torch.ones(len(features), dtype=torch.long, device=features.device), None, mask
        )
    if int(mask.sum()) != features.shape[0]:
        raise ValueError(
            f"`{name}['window_mask']` marks {int(mask.sum())} real windows but `features` holds {features.shape[0]}."
        )
    return EncodedMedia(features, mask.sum(1), mask)


def encode_sequences(
    encoder: PreTrainedModel,
    interface_config: XLLMInterfaceConfig,
    media: torch.Tensor,
    attention_mask: torch.Tensor | None,
) -> EncodedMedia:
    """One variable-length input per item (speech), with the mask of its real output frames."""
    inputs = {encoder.main_input_name: media.to(encoder.dtype)}
    if attention_mask is not None:
        inputs["attention_mask"] = attention_mask
    outputs = encoder(**inputs, output_hidden_states=interface_layer_only(interface_config), return_dict=True)
    frames = select_encoder_features(outputs.hidden_states, interface_config)  # (items, frames, width)
    frame_mask = speech_frame_mask(encoder, attention_mask, frames.shape[1], frames.shape[0])
    return EncodedMedia(
        frames, torch.ones(len(frames), dtype=torch.long, device=frames.device), None, frame_mask
    )


def speech_frame_mask(
    encoder: PreTrainedModel, input_attention_mask: torch.Tensor | None, num_frames: int, batch: int
) -> torch.Tensor:
    """(batch, num_frames) bool, True on encoder output frames computed from real input."""
    device = encoder.device
    if input_attention_mask is None:
        return torch.ones(batch, num_frames, dtype=torch.bool, device=device)
    input_lengths = input_attention_mask.sum(-1)
    if hasattr(encoder, "_get_subsampling_output_length"):  # Parakeet / FastConformer subsampling
        output_lengths = encoder._get_subsampling_output_length(input_lengths)
    elif hasattr(encoder, "_get_feat_extract_output_lengths"):  # Wav2Vec2-style conv front-end, Whisper
        output_lengths = encoder._get_feat_extract_output_lengths(input_lengths)
    else:
        raise ValueError(
            f"Cannot tell which output frames of {type(encoder).__name__} are padding; pass unpadded speech "
            "(no `speech_attention_mask`) or use an encoder with a known length function."
        )
    frames = torch.arange(num_frames, device=input_lengths.device)
    return frames.unsqueeze(0) < output_lengths.to(frames.device).unsqueeze(1)


__all__ = [
    "EncodedMedia",
    "check_media",
    "encode_media",
    "encoded_from_cache",
    "real_windows_mask",
    "select_encoder_features",
    "speech_frame_mask",
]
