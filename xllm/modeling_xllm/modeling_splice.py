"""Splicing variable-length features (speech tokens from CIF) into the LLM input sequence.

The processor writes one placeholder per speech input because only the model knows how many
tokens CIF fires. Here every placeholder is replaced by its item's tokens, and the batch is
re-padded. It works in three steps, with one index map for everything:

1. new lengths: each real token keeps one slot, each placeholder takes its item's length,
   padding takes none;
2. target positions: a running sum of the slots, shifted right for left padding;
3. scatter: text embeddings, labels and the attention mask go to their targets through the
   same map; feature rows fill the slots of their placeholder.
"""

from typing import NamedTuple

import torch

IGNORE_INDEX = -100


class SplicedInputs(NamedTuple):
    inputs_embeds: torch.Tensor  # (batch, new_seq, width)
    attention_mask: torch.Tensor  # (batch, new_seq) long
    position_ids: torch.Tensor  # (batch, new_seq)
    labels: torch.Tensor | None  # (batch, new_seq), -100 on spliced tokens and padding


def splice_variable_length_features(
    inputs_embeds: torch.Tensor,
    placeholder_mask: torch.Tensor,
    attention_mask: torch.Tensor | None,
    features: torch.Tensor,
    feature_lengths: torch.Tensor,
    labels: torch.Tensor | None = None,
    padding_side: str = "left",
) -> SplicedInputs:
    """Replace each placeholder (row-major order) by `feature_lengths[k]` rows of `features[k]`.

    inputs_embeds (batch, seq, width); placeholder_mask (batch, seq) bool; attention_mask
    (batch, seq) or None (all real); features (items, max_len, width); feature_lengths (items,).
    """
    batch, seq, width = inputs_embeds.shape
    device = inputs_embeds.device
    real = (
        torch.ones(batch, seq, dtype=torch.bool, device=device)
        if attention_mask is None
        else attention_mask.bool()
    )
    num_placeholders = int(placeholder_mask.sum())
    if num_placeholders != features.shape[0]:
        raise ValueError(
            f"The text has {num_placeholders} placeholder tokens for variable-length features but "
            f"{features.shape[0]} feature sequences were computed."
        )

    slots = real.long()  # (batch, seq): 1 per real token, 0 per padding
    slots[placeholder_mask] = feature_lengths.to(slots.dtype)
    new_lengths = slots.sum(1)  # (batch,)
    new_seq = int(new_lengths.max())
    shift = (
        (new_seq - new_lengths).unsqueeze(1)
        if padding_side == "left"
        else torch.zeros_like(new_lengths)[:, None]
    )
    start = slots.cumsum(1) - slots + shift  # (batch, seq) first target slot of each position

    spliced = inputs_embeds.new_zeros(batch, new_seq, width)
    text = real & ~placeholder_mask
    rows = torch.arange(batch, device=device).unsqueeze(1).expand(batch, seq)
    spliced[rows[text], start[text]] = inputs_embeds[text]

    item_rows = rows[placeholder_mask]  # (items,)
    item_starts = start[placeholder_mask]  # (items,)
    offsets = torch.arange(features.shape[1], device=device)
    valid = offsets.unsqueeze(0) < feature_lengths.unsqueeze(1)  # (items, max_len)
    feature_rows = item_rows.unsqueeze(1).expand_as(valid)[valid]
    feature_cols = (item_starts.unsqueeze(1) + offsets.unsqueeze(0))[valid]
    spliced[feature_rows, feature_cols] = features[valid].to(spliced.dtype)

    new_mask = torch.zeros(batch, new_seq, dtype=torch.long, device=device)
    new_mask[rows[text], start[text]] = 1
    new_mask[feature_rows, feature_cols] = 1
    position_ids = (new_mask.cumsum(1) - 1).clamp(min=0)

    new_labels = None
    if labels is not None:
        new_labels = torch.full((batch, new_seq), IGNORE_INDEX, dtype=labels.dtype, device=device)
        new_labels[rows[text], start[text]] = labels[text]
    return SplicedInputs(spliced, new_mask, position_ids, new_labels)


__all__ = ["SplicedInputs", "splice_variable_length_features"]
