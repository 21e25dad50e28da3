"""Plain softmax attention, the eager implementation behind transformers' attention interface for
every attention module of this package (Q-Former, C-Former, BEATs, PointBERT)."""

import torch
from torch import nn


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference that `sdpa` and flash attention must agree with; `attention_mask` is an
    additive float bias or None.

    query (batch, heads, q_len, head_dim), key/value (batch, heads, kv_len, head_dim) ->
    output (batch, q_len, heads, head_dim), the layout the attention interface returns.
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (batch, heads, q_len, kv_len)
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


__all__ = ["eager_attention_forward"]
