"""Continuous integrate-and-fire (CIF, Dong & Xu 2020): frame-level features to token-level ones.

A weight predictor gives every encoder frame t a weight alpha_t >= 0. Walking along time, the
weights are accumulated; each time the accumulated weight reaches the threshold beta, a token
embedding "fires": the weighted sum of the frames since the last fire. The frame that crosses
the threshold splits its weight: the part that completes the current token goes to it, the rest
starts the next token (a frame whose weight exceeds beta completes several tokens on its own).
The sequential definition, per sample (``integrate_and_fire_reference`` implements it as is):

    accumulated_weight, accumulated_state, tokens = 0, 0, []
    for t in frames:
        weight = alpha[t]
        while accumulated_weight + weight >= beta:        # the frame completes a token
            part = beta - accumulated_weight
            tokens.append(accumulated_state + part * h[t])
            accumulated_weight, accumulated_state = 0, 0
            weight -= part
        accumulated_weight += weight                      # the remainder starts the next one
        accumulated_state += weight * h[t]
    if accumulated_weight > tail_threshold:               # tail rule
        tokens.append(accumulated_state)

Tail rule: after the last frame, the leftover fires when its weight exceeds ``tail_threshold``.
It is fired as accumulated, not rescaled to unit weight, like FunASR's CIF predictor, whose
tail frame adds weight but no content.

``integrate_and_fire`` computes the same tokens without a loop over frames. With prefix sums of
the weights, frame t covers the interval [c_{t-1}, c_t) of accumulated weight and token k covers
[k * beta, (k + 1) * beta); the weight of frame t in token k is the length of the overlap of the
two intervals. Those overlaps form a sparse (tokens x frames) matrix with at most one entry per
frame (the weight it has left after its last fire, for the token it ends in) plus one per token
(the part of the frame it fires in that completes it), so the tokens are one sparse product.

Training (``ContinuousIntegrateAndFire`` with target lengths): the weights are scaled so that
each sample's sum is target_length * beta, which makes exactly target_length tokens fire, and
the quantity loss |sum(alpha) / beta - target_length| teaches the predictor to count tokens.
"""

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F


class CifWeightPredictor(nn.Module):
    """Predicts one firing weight in (0, 1) per frame; padded frames get weight 0.

    Convolution over time (so a weight sees its neighbours), ReLU, a linear layer to one value,
    sigmoid. Padded frames are zeroed before the convolution so that the weights of a sample do
    not depend on how much padding the batch gave it.
    """

    def __init__(self, hidden_size: int, conv_kernel_size: int = 3):
        super().__init__()
        if conv_kernel_size < 1 or conv_kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel_size must be a positive odd number, got {conv_kernel_size}")
        self.conv = nn.Conv1d(hidden_size, hidden_size, conv_kernel_size, padding=conv_kernel_size // 2)
        self.activation = nn.ReLU()
        self.to_weight = nn.Linear(hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """(batch, frames, width) features and (batch, frames) bool mask -> (batch, frames) weights."""
        hidden_states = hidden_states * frame_mask.unsqueeze(-1)
        context = self.conv(hidden_states.transpose(1, 2)).transpose(1, 2)  # (batch, frames, width)
        weights = torch.sigmoid(self.to_weight(self.activation(context))).squeeze(-1)  # (batch, frames)
        return weights * frame_mask


def _check_integrate_inputs(hidden_states: torch.Tensor, alphas: torch.Tensor, threshold: float) -> None:
    if hidden_states.dim() != 3:
        raise ValueError(
            f"hidden_states must be (batch, frames, width), got shape {tuple(hidden_states.shape)}"
        )
    if alphas.shape != hidden_states.shape[:2]:
        raise ValueError(
            f"alphas must be (batch, frames) = {tuple(hidden_states.shape[:2])}, got shape {tuple(alphas.shape)}"
        )
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")


def _count_fires(total_weight: torch.Tensor, threshold: float, tail_threshold: float) -> torch.Tensor:
    """Number of tokens fired from each sample's total weight: complete tokens plus the tail rule."""
    complete_tokens = torch.floor(total_weight / threshold)
    leftover = total_weight - complete_tokens * threshold
    return (complete_tokens + (leftover > tail_threshold)).long()


def _end_parts(
    frame_start: torch.Tensor, frame_end: torch.Tensor, token_lengths: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame: the token it ends in, and the weight it has left for it after its last fire.

    The weight is 0 when that token never fires (the leftover the tail rule drops).
    """
    end_token = (torch.ceil(frame_end / threshold).long() - 1).clamp(min=0)  # (batch, frames)
    end_part = frame_end - torch.maximum(frame_start, end_token.double() * threshold)
    return end_token, end_part * (end_token < token_lengths.unsqueeze(-1))


def _fire_parts(
    frame_start: torch.Tensor,
    frame_end: torch.Tensor,
    end_token: torch.Tensor,
    token_lengths: torch.Tensor,
    max_tokens: int,
    threshold: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token: the frame it fires in, and the part of that frame's weight it takes.

    Together with the end parts this accounts for every frame's weight: a frame gives its
    weight to the tokens that fire inside it, and what is left to the token it ends in. The
    part is 0 when the token ends exactly where its frame ends (the end part covers it).
    """
    batch, frames = frame_end.shape
    token_index = torch.arange(max_tokens, device=frame_end.device)  # (tokens,)
    token_start = token_index.double() * threshold
    token_end = (token_start + threshold).expand(batch, -1).contiguous()  # (batch, tokens)
    fire_frame = torch.searchsorted(frame_end.contiguous(), token_end).clamp(max=frames - 1)
    fires_inside_frame = end_token.gather(1, fire_frame) > token_index
    fire_part = token_end - torch.maximum(frame_start.gather(1, fire_frame), token_start)
    return fire_frame, fire_part * fires_inside_frame * (token_index < token_lengths.unsqueeze(-1))


def integrate_and_fire(
    hidden_states: torch.Tensor,
    alphas: torch.Tensor,
    threshold: float = 1.0,
    tail_threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectorised integrate-and-fire; equals ``integrate_and_fire_reference``.

    hidden_states (batch, frames, width); alphas (batch, frames), non-negative and 0 on padding.
    Returns token_embeddings (batch, max_tokens, width), zero beyond each sample's count, and
    token_lengths (batch,). Differentiable in both inputs; one host sync (to size the output).
    """
    _check_integrate_inputs(hidden_states, alphas, threshold)
    batch, frames, width = hidden_states.shape
    # Accumulated weight at frame boundaries, in float64 so that long inputs lose no precision.
    boundaries = F.pad(alphas.double().cumsum(-1), (1, 0))  # (batch, frames + 1)
    frame_start, frame_end = boundaries[:, :-1], boundaries[:, 1:]  # (batch, frames)
    token_lengths = _count_fires(boundaries[:, -1], threshold, tail_threshold)  # (batch,)
    max_tokens = int(token_lengths.max()) if batch else 0  # the one host sync
    if max_tokens == 0:
        return hidden_states.new_zeros(batch, 0, width), token_lengths
    end_token, end_weight = _end_parts(frame_start, frame_end, token_lengths, threshold)
    fire_frame, fire_weight = _fire_parts(
        frame_start, frame_end, end_token, token_lengths, max_tokens, threshold
    )

    # Integrate-and-fire is a sparse linear map from frames to tokens, with one entry per frame
    # (its end part) and one per token (its fire part); the sparse product reads each frame once.
    frame_index = torch.arange(frames, device=alphas.device).expand(batch, -1)
    token_index = torch.arange(max_tokens, device=alphas.device).expand(batch, -1)
    # Frames past the last fired token have weight 0; clamping only keeps their row in range.
    entry_token = torch.cat([end_token.clamp(max=max_tokens - 1), token_index], dim=1)  # (batch, entries)
    entry_frame = torch.cat([frame_index, fire_frame], dim=1)
    entry_weight = torch.cat([end_weight, fire_weight], dim=1).to(hidden_states.dtype)
    sample_index = torch.arange(batch, device=alphas.device).unsqueeze(-1)  # (batch, 1)
    rows = (entry_token + sample_index * max_tokens).flatten()
    columns = (entry_frame + sample_index * frames).flatten()
    # The indices are in range by construction: no invariant check (saying so silences torch).
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        token_from_frame = torch.sparse_coo_tensor(
            torch.stack([rows, columns]), entry_weight.flatten(), size=(batch * max_tokens, batch * frames)
        )
    token_embeddings = torch.sparse.mm(token_from_frame, hidden_states.reshape(batch * frames, width))
    return token_embeddings.view(batch, max_tokens, width), token_lengths


def integrate_and_fire_reference(
    hidden_states: torch.Tensor,
    alphas: torch.Tensor,
    threshold: float = 1.0,
    tail_threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequential definition from the module docstring: a Python loop over samples and frames.

    Slow; it is the specification that tests and the benchmark hold ``integrate_and_fire`` to.
    Same inputs and outputs as ``integrate_and_fire``.
    """
    _check_integrate_inputs(hidden_states, alphas, threshold)
    batch, frames, width = hidden_states.shape
    tokens_per_sample = []
    for sample_states, sample_alphas in zip(hidden_states, alphas.double().tolist(), strict=True):
        tokens = []
        accumulated_weight, accumulated_state = 0.0, hidden_states.new_zeros(width)
        for state, weight in zip(sample_states, sample_alphas, strict=True):
            while accumulated_weight + weight >= threshold:
                part = threshold - accumulated_weight
                tokens.append(accumulated_state + part * state)
                accumulated_weight, accumulated_state = 0.0, hidden_states.new_zeros(width)
                weight -= part
            accumulated_weight += weight
            accumulated_state = accumulated_state + weight * state
        if accumulated_weight > tail_threshold:
            tokens.append(accumulated_state)
        tokens_per_sample.append(tokens)

    token_counts = [len(tokens) for tokens in tokens_per_sample]
    token_embeddings = hidden_states.new_zeros(batch, max(token_counts, default=0), width)
    for sample, tokens in enumerate(tokens_per_sample):
        if tokens:
            token_embeddings[sample, : len(tokens)] = torch.stack(tokens)
    return token_embeddings, torch.tensor(token_counts, device=alphas.device)


class CifOutput(NamedTuple):
    """What ``ContinuousIntegrateAndFire`` returns."""

    token_embeddings: torch.Tensor  # (batch, max_tokens, width), zero beyond token_lengths
    token_lengths: torch.Tensor  # (batch,) long
    alphas: torch.Tensor  # (batch, frames) predicted weights, before any scaling to the targets
    quantity_loss: torch.Tensor | None  # scalar, only when target lengths are given


class ContinuousIntegrateAndFire(nn.Module):
    """CIF: predict frame weights, then integrate and fire them into token embeddings.

    With ``target_lengths`` (training) the weights are scaled so that exactly target_length
    tokens fire and the quantity loss is returned; without them the tail rule decides the count.
    """

    def __init__(
        self,
        hidden_size: int,
        threshold: float = 1.0,
        tail_threshold: float = 0.5,
        conv_kernel_size: int = 3,
    ):
        super().__init__()
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        if not 0 <= tail_threshold < threshold:
            raise ValueError(f"tail_threshold must be in [0, threshold={threshold}), got {tail_threshold}")
        self.hidden_size = hidden_size
        self.threshold = threshold
        self.tail_threshold = tail_threshold
        self.weight_predictor = CifWeightPredictor(hidden_size, conv_kernel_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
        target_lengths: torch.Tensor | None = None,
    ) -> CifOutput:
        """hidden_states (batch, frames, width); frame_mask (batch, frames) bool, True on real
        frames (None: all real); target_lengths (batch,) transcript token counts, or None."""
        self._check_inputs(hidden_states, frame_mask, target_lengths)
        if frame_mask is None:
            frame_mask = torch.ones(hidden_states.shape[:2], dtype=torch.bool, device=hidden_states.device)
        alphas = self.weight_predictor(hidden_states, frame_mask)  # (batch, frames)
        if target_lengths is None:
            token_embeddings, token_lengths = integrate_and_fire(
                hidden_states, alphas, self.threshold, self.tail_threshold
            )
            return CifOutput(token_embeddings, token_lengths, alphas, None)

        total_weight = alphas.sum(-1)  # (batch,)
        quantity_loss = (total_weight / self.threshold - target_lengths).abs().mean()
        target_weight = target_lengths.to(alphas.dtype) * self.threshold
        scaled_alphas = alphas * (target_weight / total_weight.clamp(min=1e-6)).unsqueeze(-1)
        # The scaled sum lands within rounding of target_length * threshold, on either side.
        # Firing any leftover above half a token recovers a last fire lost to 2.9999999 < 3
        # and ignores a crumb from 3.0000001, so exactly target_length tokens fire.
        token_embeddings, token_lengths = integrate_and_fire(
            hidden_states, scaled_alphas, self.threshold, tail_threshold=self.threshold / 2
        )
        return CifOutput(token_embeddings, token_lengths, alphas, quantity_loss)

    def _check_inputs(
        self,
        hidden_states: torch.Tensor,
        frame_mask: torch.Tensor | None,
        target_lengths: torch.Tensor | None,
    ) -> None:
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(
                f"hidden_states must be (batch, frames, {self.hidden_size}), got shape {tuple(hidden_states.shape)}"
            )
        if frame_mask is not None and (
            frame_mask.shape != hidden_states.shape[:2] or frame_mask.dtype != torch.bool
        ):
            raise ValueError(
                f"frame_mask must be a bool tensor of shape {tuple(hidden_states.shape[:2])}, "
                f"got {frame_mask.dtype} of shape {tuple(frame_mask.shape)}"
            )
        if target_lengths is not None and target_lengths.shape != hidden_states.shape[:1]:
            raise ValueError(
                f"target_lengths must have shape ({hidden_states.shape[0]},), got {tuple(target_lengths.shape)}"
            )
