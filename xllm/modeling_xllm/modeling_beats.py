"""BEATs audio encoder (Chen et al., 2022, arXiv 2212.09058; microsoft/unilm `beats/`).

Input: normalised 128-bin Kaldi fbank frames (batch, frames, 128), 100 frames a second.
1. A 16x16 convolution cuts the spectrogram into patches, time-major: patch t * 8 + f covers
   frames 16t..16t+15 and bins 16f..16f+15; layer norm, then a linear projection to the width.
2. A convolutional position embedding (weight-normalised grouped conv, GELU) is added, then
   layer norm (post-norm transformer).
3. Post-norm layers with DeepNorm residual scaling. Attention adds a relative position bias
   (T5-style buckets, one table shared by all layers) scaled per query by a learned gate
   ("gated relative position bias", as WavLM). The bias is an additive float mask, so eager,
   sdpa and other implementations of transformers' attention interface all apply it.

BEATs scales queries by 1/32 and subtracts the row maximum before softmax for fp16 range; that is
mathematically the plain scaled dot product used here.
"""

import math
from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.t5.modeling_t5 import T5Attention

from .configuration_beats import XLLMBeatsConfig
from .modeling_attention import eager_attention_forward


class BeatsPositionalConv(nn.Module):
    """Weight-normalised grouped 1-D convolution over time, trimmed to the input length, GELU."""

    def __init__(self, config: XLLMBeatsConfig):
        super().__init__()
        kernel_size = config.conv_pos_kernel_size
        conv = nn.Conv1d(
            config.hidden_size,
            config.hidden_size,
            kernel_size=kernel_size,
            padding=kernel_size // 2,
            groups=config.conv_pos_groups,
        )
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.activation = nn.GELU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        num_patches = hidden_states.shape[1]
        convolved = self.conv(hidden_states.transpose(1, 2))[..., :num_patches]  # (batch, width, patches)
        return self.activation(convolved).transpose(1, 2)


class BeatsAttention(nn.Module):
    """Self-attention whose additive bias is the relative position bias times a per-query gate."""

    def __init__(self, config: XLLMBeatsConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.grep_linear = nn.Linear(self.head_dim, 8)
        self.grep_a = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))

    def gate(self, query: torch.Tensor) -> torch.Tensor:
        """Per-head, per-query scale of the position bias: (batch, heads, patches, 1)."""
        batch_size, num_heads, num_patches, _ = query.shape
        gate_logits = self.grep_linear(query).view(batch_size, num_heads, num_patches, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(gate_logits).chunk(2, dim=-1)
        return gate_a * (gate_b * self.grep_a - 1.0) + 2.0

    def forward(
        self, hidden_states: torch.Tensor, position_bias: torch.Tensor, padding_bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, patches, width) and the attention weights (batch, heads, patches, patches), which only
        eager attention computes (None otherwise)."""
        batch_size, num_patches, width = hidden_states.shape
        heads_shape = (batch_size, num_patches, self.num_heads, self.head_dim)
        query = (
            self.q_proj(hidden_states).view(heads_shape).transpose(1, 2)
        )  # (batch, heads, patches, head_dim)
        key = self.k_proj(hidden_states).view(heads_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(heads_shape).transpose(1, 2)
        bias = self.gate(query) * position_bias  # (batch, heads, patches, patches)
        if padding_bias is not None:
            bias = bias + padding_bias
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention(
            self,
            query,
            key,
            value,
            bias,
            scaling=self.scaling,
            dropout=self.config.attention_dropout if self.training else 0.0,
        )
        return self.out_proj(output.reshape(batch_size, num_patches, width)), weights


class BeatsLayer(nn.Module):
    """Post-norm transformer layer; DeepNorm multiplies the residual branch by `residual_scale`."""

    def __init__(self, config: XLLMBeatsConfig):
        super().__init__()
        self.residual_scale = (2 * config.num_hidden_layers) ** 0.25 if config.deep_norm else 1.0
        self.self_attn = BeatsAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, hidden_states: torch.Tensor, position_bias: torch.Tensor, padding_bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.self_attn(hidden_states, position_bias, padding_bias)
        hidden_states = self.self_attn_layer_norm(
            hidden_states * self.residual_scale + self.dropout(attended)
        )
        transformed = self.dropout(self.fc2(self.activation(self.fc1(hidden_states))))
        return self.final_layer_norm(hidden_states * self.residual_scale + transformed), weights


class BeatsEncoder(nn.Module):
    def __init__(self, config: XLLMBeatsConfig):
        super().__init__()
        self.config = config
        self.pos_conv = BeatsPositionalConv(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.relative_attention_bias = nn.Embedding(config.num_buckets, config.num_attention_heads)
        self.layers = nn.ModuleList(BeatsLayer(config) for _ in range(config.num_hidden_layers))

    def position_bias(self, num_patches: int) -> torch.Tensor:
        """Relative position bias shared by all layers: (1, heads, patches, patches)."""
        positions = torch.arange(num_patches, device=self.relative_attention_bias.weight.device)
        relative = positions[None, :] - positions[:, None]  # key minus query
        # BEATs uses T5's bidirectional log-spaced buckets; reuse transformers' implementation.
        buckets = T5Attention._relative_position_bucket(
            relative,
            bidirectional=True,
            num_buckets=self.config.num_buckets,
            max_distance=self.config.max_distance,
        )
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def forward(
        self,
        hidden_states: torch.Tensor,
        patch_mask: torch.Tensor | None,
        output_hidden_states: bool,
        output_attentions: bool = False,
    ) -> BaseModelOutput:
        padding_bias = None
        if patch_mask is not None:
            hidden_states = hidden_states * patch_mask.unsqueeze(-1).to(hidden_states.dtype)
            blocked = torch.finfo(hidden_states.dtype).min
            padding_bias = (~patch_mask)[:, None, None, :].to(
                hidden_states.dtype
            ) * blocked  # (batch, 1, 1, patches)
        hidden_states = self.layer_norm(hidden_states + self.pos_conv(hidden_states))
        position_bias = self.position_bias(hidden_states.shape[1])
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, position_bias, padding_bias)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (weights,)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


class XLLMBeatsPreTrainedModel(PreTrainedModel):
    config: XLLMBeatsConfig
    config_class = XLLMBeatsConfig
    base_model_prefix = "beats"
    main_input_name = "input_features"
    input_modalities = ("audio",)
    _no_split_modules = ["BeatsLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, BeatsAttention):
            init.ones_(module.grep_a)
        elif isinstance(module, BeatsPositionalConv):
            std = math.sqrt(4.0 / (module.conv.kernel_size[0] * module.conv.in_channels))
            init.normal_(module.conv.parametrizations.weight.original1, mean=0.0, std=std)
            init.ones_(module.conv.parametrizations.weight.original0)
            init.zeros_(module.conv.bias)


class XLLMBeatsModel(XLLMBeatsPreTrainedModel):
    """BEATs encoder: fbank (batch, frames, mel bins) -> patch features (batch, patches, width)."""

    def __init__(self, config: XLLMBeatsConfig):
        super().__init__(config)
        self.patch_embedding = nn.Conv2d(
            1, config.patch_embedding_size, config.patch_size, stride=config.patch_size, bias=config.conv_bias
        )
        self.layer_norm = nn.LayerNorm(config.patch_embedding_size, eps=config.layer_norm_eps)
        self.post_extract_proj = nn.Linear(config.patch_embedding_size, config.hidden_size)
        self.encoder = BeatsEncoder(config)
        self.post_init()

    def patch_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Frame mask (batch, frames) -> patch mask (batch, patches): a patch is kept if any frame is."""
        patch = self.config.patch_size
        time_steps = attention_mask.shape[1] // patch
        kept = attention_mask[:, : time_steps * patch].reshape(-1, time_steps, patch).bool().any(-1)
        return kept.repeat_interleave(
            self.config.num_mel_bins // patch, dim=1
        )  # time-major, like the patches

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        **kwargs,
    ) -> BaseModelOutput:
        """Encode fbank frames; `attention_mask` (batch, frames) marks real frames with 1. The attention
        weights (`output_attentions`) come with eager attention only."""
        if input_features.dim() != 3 or input_features.shape[-1] != self.config.num_mel_bins:
            raise ValueError(
                f"input_features must have shape (batch, frames, {self.config.num_mel_bins}), "
                f"got {tuple(input_features.shape)}"
            )
        if input_features.shape[1] < self.config.patch_size:
            raise ValueError(
                f"input_features need at least patch_size={self.config.patch_size} frames, "
                f"got {input_features.shape[1]}"
            )
        fbank = input_features.to(self.patch_embedding.weight.dtype).unsqueeze(1)  # (batch, 1, frames, bins)
        patches = self.patch_embedding(fbank).flatten(2).transpose(1, 2)  # (batch, patches, patch width)
        hidden_states = self.post_extract_proj(self.layer_norm(patches))
        patch_mask = self.patch_mask(attention_mask) if attention_mask is not None else None
        return self.encoder(hidden_states, patch_mask, output_hidden_states, output_attentions)


__all__ = ["XLLMBeatsConfig", "XLLMBeatsModel", "XLLMBeatsPreTrainedModel"]
