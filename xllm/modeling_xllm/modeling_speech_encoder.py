"""Which encoder output frames are real: the frame mask of any transformers speech encoder.

CIF must never integrate padded frames. Each encoder family shortens its input differently
(conv subsampling, a conv feature extractor, a stride-2 conv), and Whisper pads every input to
30 s and ignores the attention mask, so the mask is rebuilt from the true input lengths with
each family's own length function.
"""

import torch
from transformers import PreTrainedModel


def encoder_input_name(encoder: PreTrainedModel) -> str:
    """`input_features` (fbank / log-mel encoders) or `input_values` (raw-waveform encoders)."""
    return encoder.main_input_name


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


__all__ = ["encoder_input_name", "speech_frame_mask"]
