"""PointBERT point-cloud encoder (Yu et al., 2022) with the ULIP-2 layout (Xue et al., 2023).

A cloud becomes tokens in four steps:
1. farthest-point sampling picks `num_groups` group centres;
2. the `group_size` nearest neighbours of every centre form a group, in coordinates relative to
   the centre (colours, when present, ride along unchanged);
3. a small PointNet (shared per-point MLP, max-pool, concatenate the pooled feature back, second
   MLP, max-pool) turns every group into one token;
4. a pre-norm ViT runs over [cls; group tokens]; as in ULIP-2, the position embedding (an MLP of
   the centre coordinates, a learned vector for cls) is added again before every block.

With `output="ulip_embedding"` the encoder ends as ULIP-2's `encode_pc`: [final-normed cls; max over the
group tokens] projected by `pc_projection` to one token (LAVIS X-InstructBLIP's 3D input).

transformers has no point-cloud encoder, so sampling and grouping are written here; they are
short, vectorised over the batch and deterministic (sampling starts at point 0, as the CUDA
kernel ULIP-2 uses does).
"""

from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_pointbert import XLLMPointBertConfig
from .modeling_attention import eager_attention_forward


def farthest_point_sample(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Indices of `num_samples` points, each the farthest from those already chosen.

    Starts from point 0 of every cloud. points: (batch, points, 3) -> (batch, num_samples).
    """
    batch_size, num_points, _ = points.shape
    if num_samples > num_points:
        raise ValueError(f"num_samples ({num_samples}) must not exceed the number of points ({num_points})")
    batch_index = torch.arange(batch_size, device=points.device)
    chosen = torch.zeros(batch_size, num_samples, dtype=torch.long, device=points.device)
    distance_to_chosen = torch.full((batch_size, num_points), float("inf"), device=points.device)
    farthest = torch.zeros(batch_size, dtype=torch.long, device=points.device)
    for step in range(num_samples):
        chosen[:, step] = farthest
        newest = points[batch_index, farthest].unsqueeze(1)  # (batch, 1, 3)
        distance = (points - newest).pow(2).sum(-1)  # (batch, points)
        distance_to_chosen = torch.minimum(distance_to_chosen, distance)
        farthest = distance_to_chosen.argmax(-1)
    return chosen


def group_points(
    point_clouds: torch.Tensor, num_groups: int, group_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split clouds into groups of nearest neighbours around farthest-point-sampled centres.

    point_clouds: (batch, points, 3 or 6). Returns the groups (batch, groups, group_size, channels)
    with xyz relative to their centre, and the centres (batch, groups, 3).
    """
    xyz = point_clouds[..., :3]
    centre_index = farthest_point_sample(xyz, num_groups)  # (batch, groups)
    centres = torch.gather(xyz, 1, centre_index.unsqueeze(-1).expand(-1, -1, 3))  # (batch, groups, 3)
    distances = torch.cdist(centres, xyz)  # (batch, groups, points)
    neighbour_index = distances.topk(group_size, dim=-1, largest=False).indices  # (batch, groups, group_size)
    batch_index = torch.arange(xyz.shape[0], device=xyz.device).view(-1, 1, 1)
    groups = point_clouds[batch_index, neighbour_index]  # (batch, groups, group_size, channels)
    relative_xyz = groups[..., :3] - centres.unsqueeze(2)
    return torch.cat([relative_xyz, groups[..., 3:]], dim=-1), centres


def pointwise_mlp(in_channels: int, hidden_channels: int, out_channels: int) -> nn.Sequential:
    """Shared per-point MLP (1x1 convolutions with batch norm), PointBERT's building block."""
    return nn.Sequential(
        nn.Conv1d(in_channels, hidden_channels, 1),
        nn.BatchNorm1d(hidden_channels),
        nn.ReLU(),
        nn.Conv1d(hidden_channels, out_channels, 1),
    )


class PointNetTokenEmbedder(nn.Module):
    """One token per group: per-point MLP, max-pool, concatenate pooled feature, MLP, max-pool."""

    def __init__(self, config: XLLMPointBertConfig):
        super().__init__()
        width = config.pointnet_width
        self.first_mlp = pointwise_mlp(config.in_channels, 128, width // 2)
        self.second_mlp = pointwise_mlp(width, width, config.group_embedding_size)

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        batch_size, num_groups, group_size, channels = groups.shape
        points = groups.reshape(batch_size * num_groups, group_size, channels).transpose(1, 2)
        features = self.first_mlp(points)  # (batch * groups, width / 2, group_size)
        pooled = features.max(dim=-1, keepdim=True).values.expand(-1, -1, group_size)
        features = self.second_mlp(
            torch.cat([pooled, features], dim=1)
        )  # (batch * groups, width, group_size)
        return features.max(dim=-1).values.reshape(batch_size, num_groups, -1)


class PointBertAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (ULIP-2's layout)."""

    def __init__(self, config: XLLMPointBertConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch_size, num_tokens, width = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, num_tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, tokens, head_dim)
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, _ = attention(
            self,
            query,
            key,
            value,
            None,
            scaling=self.scaling,
            dropout=self.config.attention_dropout if self.training else 0.0,
        )
        return self.out_proj(output.reshape(batch_size, num_tokens, width))


class PointBertMLP(nn.Module):
    def __init__(self, config: XLLMPointBertConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class PointBertLayer(nn.Module):
    """Pre-norm ViT block."""

    def __init__(self, config: XLLMPointBertConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = PointBertAttention(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PointBertMLP(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.attention(self.attention_norm(hidden_states))
        return hidden_states + self.mlp(self.mlp_norm(hidden_states))


class XLLMPointBertPreTrainedModel(PreTrainedModel):
    config: XLLMPointBertConfig
    config_class = XLLMPointBertConfig
    base_model_prefix = "pointbert"
    main_input_name = "point_clouds"
    _no_split_modules = ["PointBertLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, XLLMPointBertModel):
            init.zeros_(module.cls_token)
            init.normal_(module.cls_position, std=self.config.initializer_range)


class XLLMPointBertModel(XLLMPointBertPreTrainedModel):
    """PointBERT encoder: point clouds (batch, points, 3 or 6) -> tokens (batch, 1 + groups, width)."""

    def __init__(self, config: XLLMPointBertConfig):
        super().__init__(config)
        self.token_embedder = PointNetTokenEmbedder(config)
        self.token_projection = nn.Linear(config.group_embedding_size, config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.cls_position = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embedder = nn.Sequential(
            nn.Linear(3, config.position_embedding_size),
            nn.GELU(),
            nn.Linear(config.position_embedding_size, config.hidden_size),
        )
        self.layers = nn.ModuleList(PointBertLayer(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        # ULIP's `pc_projection` (a (2 * hidden, projection) matrix there, `x @ P`; a bias-free Linear here).
        self.projection = (
            nn.Linear(2 * config.hidden_size, config.projection_size, bias=False)
            if config.output == "ulip_embedding"
            else None
        )
        self.post_init()

    def _check_point_clouds(self, point_clouds: torch.Tensor) -> None:
        expected_channels = self.config.in_channels
        if point_clouds.dim() != 3 or point_clouds.shape[-1] != expected_channels:
            raise ValueError(
                f"point_clouds must have shape (batch, points, {expected_channels}), got {tuple(point_clouds.shape)}"
            )
        needed = max(self.config.num_groups, self.config.group_size)
        if point_clouds.shape[1] < needed:
            raise ValueError(
                f"point_clouds need at least {needed} points (num_groups={self.config.num_groups}, "
                f"group_size={self.config.group_size}), got {point_clouds.shape[1]}"
            )

    def forward(
        self, point_clouds: torch.Tensor, output_hidden_states: bool = False, **kwargs
    ) -> BaseModelOutput:
        """Encode clouds; `last_hidden_state` holds every token, cls first, or (`ulip_embedding`) the one
        projected token, which is then also the last entry of `hidden_states` (the interface's default layer)."""
        self._check_point_clouds(point_clouds)
        point_clouds = point_clouds.to(self.token_projection.weight.dtype)
        groups, centres = group_points(point_clouds, self.config.num_groups, self.config.group_size)
        tokens = self.token_projection(self.token_embedder(groups))  # (batch, groups, width)
        batch_size = tokens.shape[0]
        hidden_states = torch.cat([self.cls_token.expand(batch_size, -1, -1), tokens], dim=1)
        positions = torch.cat(
            [self.cls_position.expand(batch_size, -1, -1), self.position_embedder(centres)], dim=1
        )  # (batch, 1 + groups, width)
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states + positions)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        hidden_states = self.final_norm(hidden_states)
        if self.projection is not None:
            pooled = torch.cat([hidden_states[:, 0], hidden_states[:, 1:].max(dim=1).values], dim=-1)
            hidden_states = self.projection(pooled).unsqueeze(1)  # (batch, 1, projection_size)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        return BaseModelOutput(last_hidden_state=hidden_states, hidden_states=all_hidden_states)


__all__ = ["XLLMPointBertConfig", "XLLMPointBertModel", "XLLMPointBertPreTrainedModel"]
