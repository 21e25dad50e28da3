"""The Q-Former interface (BLIP-2 / InstructBLIP): learned queries read a frozen encoder.

A BERT-style post-LayerNorm transformer runs over `[queries; instruction tokens]`. Every layer
lets queries and instruction attend to each other (self-attention); every
`cross_attention_frequency`-th layer the queries, and only they, also attend to the encoder
features (cross-attention). Queries and instruction tokens have separate feed-forward blocks.
Only the query outputs leave the Q-Former; a linear adapter maps them into the LLM's width.

The arithmetic matches transformers' `InstructBlipQFormerModel` (so converted BLIP-2/InstructBLIP
weights give the same outputs); the module layout is ours: one class per idea.
"""

from collections.abc import Callable

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_xllm import XLLMInterfaceConfig
from .modeling_attention import eager_attention_forward
from .modeling_x2l import XLLMInterfacePreTrainedModel


class QFormerAttention(nn.Module):
    """Multi-head attention + output projection + residual + LayerNorm (BERT post-LN block).

    Used for self-attention (keys from the same sequence) and for cross-attention (keys from the
    encoder, of width `key_value_size`).
    """

    def __init__(self, config: XLLMInterfaceConfig, key_value_size: int):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(key_value_size, config.hidden_size)
        self.value = nn.Linear(key_value_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        **kwargs,
    ) -> torch.Tensor:
        batch, q_len, _ = hidden_states.shape
        kv_len = key_value_states.shape[1]
        query = self.query(hidden_states).view(batch, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key = self.key(key_value_states).view(batch, kv_len, self.num_heads, self.head_dim).transpose(1, 2)
        value = (
            self.value(key_value_states).view(batch, kv_len, self.num_heads, self.head_dim).transpose(1, 2)
        )

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, _ = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(batch, q_len, -1)  # (batch, q_len, hidden)
        return self.layer_norm(self.dropout(self.output(attn_output)) + hidden_states)


class QFormerFeedForward(nn.Module):
    """BERT feed-forward block with residual and post-LayerNorm."""

    def __init__(self, config: XLLMInterfaceConfig):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        update = self.output(self.activation(self.intermediate(hidden_states)))
        return self.layer_norm(self.dropout(update) + hidden_states)


class QFormerLayer(GradientCheckpointingLayer):
    """Self-attention over [queries; text], cross-attention of the queries to the encoder (some
    layers), then separate feed-forward blocks for queries and text."""

    def __init__(self, config: XLLMInterfaceConfig, has_cross_attention: bool):
        super().__init__()
        self.self_attention = QFormerAttention(config, key_value_size=config.hidden_size)
        self.cross_attention = (
            QFormerAttention(config, key_value_size=config.encoder_hidden_size)
            if has_cross_attention
            else None
        )
        self.query_feed_forward = QFormerFeedForward(config)
        self.text_feed_forward = QFormerFeedForward(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor | None,
        num_queries: int,
        **kwargs,
    ) -> torch.Tensor:
        hidden_states = self.self_attention(hidden_states, hidden_states, attention_mask, **kwargs)
        queries, text = hidden_states[:, :num_queries], hidden_states[:, num_queries:]
        if self.cross_attention is not None and encoder_hidden_states is not None:
            queries = self.cross_attention(queries, encoder_hidden_states, None, **kwargs)
        queries = self.query_feed_forward(queries)
        if text.shape[1] == 0:
            return queries
        return torch.cat([queries, self.text_feed_forward(text)], dim=1)


class QFormer(nn.Module):
    """The Q-Former transformer: embeds the instruction, prepends the queries, runs the layers.

    Without `query_embeds` it is a plain text encoder over `input_ids` (used by stage-1 objectives
    and by the C-Former's context stack), so nothing here assumes that queries are present.
    """

    def __init__(self, config: XLLMInterfaceConfig):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.embedding_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.embedding_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(
            QFormerLayer(config, has_cross_attention=index % config.cross_attention_frequency == 0)
            for index in range(config.num_hidden_layers)
        )

    def embed(self, query_embeds: torch.Tensor | None, input_ids: torch.Tensor | None) -> torch.Tensor:
        parts = [] if query_embeds is None else [query_embeds]
        if input_ids is not None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            parts.append(self.word_embeddings(input_ids) + self.position_embeddings(positions))
        norm_dtype = self.embedding_layer_norm.weight.dtype  # fp32 under half precision
        embeddings = self.embedding_layer_norm(torch.cat([p.to(norm_dtype) for p in parts], dim=1))
        return self.embedding_dropout(embeddings.to(self.word_embeddings.weight.dtype))

    def forward(
        self,
        query_embeds: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Returns the last hidden states (batch, queries + text, hidden).

        `attention_mask` (batch, queries + text) marks real positions with 1; `None` means all real.
        """
        hidden_states = self.embed(query_embeds, input_ids)  # (batch, queries + text, hidden)
        num_queries = 0 if query_embeds is None else query_embeds.shape[1]
        mask = create_bidirectional_mask(
            self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, encoder_hidden_states, num_queries, **kwargs)
        return hidden_states


class QFormerInterface(XLLMInterfacePreTrainedModel):
    """Encoder features -> LayerNorm -> Q-Former with learned queries -> linear adapter.

    One instance per modality. Instruction-aware interfaces also read the instruction tokens
    (X-InstructBLIP); otherwise only the queries go through the Q-Former (X-LLM, BLIP-2).
    """

    _no_split_modules = ["QFormerLayer"]

    def __init__(self, config: XLLMInterfaceConfig):
        super().__init__(config)
        self.encoder_layer_norm = nn.LayerNorm(config.encoder_hidden_size, eps=config.encoder_layer_norm_eps)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, config.hidden_size))
        self.qformer = QFormer(config)
        self.adapter = nn.Linear(config.hidden_size, config.output_hidden_size)
        if config.frame_positions:  # video time (configuration_xllm: `frame_positions`)
            self.frame_feature_embeddings = nn.Embedding(config.frame_positions, config.encoder_hidden_size)
            self.frame_query_embeddings = nn.Embedding(config.frame_positions, config.hidden_size)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self:
            nn.init.normal_(self.query_tokens, mean=0.0, std=self.config.initializer_range)

    def forward(
        self,
        encoder_hidden_states: torch.Tensor,
        instruction_ids: torch.Tensor | None = None,
        instruction_mask: torch.Tensor | None = None,
        frames_per_item: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """(inputs, encoder_tokens, encoder_width) -> (inputs, num_query_tokens, llm_width).

        `instruction_ids`/`instruction_mask` are (inputs, instruction_length), one row per input
        (an image, a video frame, an audio window); they are ignored unless the interface is
        instruction-aware. With `frame_positions` (video time), `frames_per_item` says how many
        consecutive inputs are the frames of one video.
        """
        norm_dtype = self.encoder_layer_norm.weight.dtype  # fp32 under half precision
        encoder_hidden_states = self.encoder_layer_norm(encoder_hidden_states.to(norm_dtype))
        encoder_hidden_states = encoder_hidden_states.to(self.adapter.weight.dtype)
        batch = encoder_hidden_states.shape[0]
        queries = self.query_tokens.expand(batch, -1, -1)  # (inputs, queries, hidden), fp32
        if self.config.frame_positions:
            encoder_hidden_states, queries = self.with_frame_times(
                encoder_hidden_states, queries, frames_per_item
            )
        attention_mask = None
        if not self.config.instruction_aware:
            instruction_ids = None
        elif instruction_ids is None:
            raise ValueError(
                "This interface is instruction-aware: pass the instruction tokens (`qformer_input_ids`), "
                "or build the model with `instruction_aware=False`."
            )
        elif instruction_mask is not None:
            query_mask = instruction_mask.new_ones(batch, queries.shape[1])
            attention_mask = torch.cat([query_mask, instruction_mask], dim=1)
        hidden_states = self.qformer(
            queries, instruction_ids, attention_mask, encoder_hidden_states, **kwargs
        )
        return self.adapter(hidden_states[:, : queries.shape[1]])

    def with_frame_times(
        self, features: torch.Tensor, queries: torch.Tensor, frames_per_item: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Video time: (inputs, tokens, width) features and (inputs, queries, hidden) queries, frames of an
        item consecutive -> every frame's features marked with its time and gathered per video,
        (inputs, frames * tokens, width), and each frame's queries marked with its time."""
        inputs, tokens, width = features.shape
        if frames_per_item is None or frames_per_item < 1 or inputs % frames_per_item:
            raise ValueError(
                f"This interface reads whole videos (`frame_positions`): pass `frames_per_item`, the frames of "
                f"each item, which must divide the {inputs} inputs; got {frames_per_item}."
            )
        if frames_per_item > self.config.frame_positions:
            raise ValueError(
                f"This interface knows {self.config.frame_positions} frame positions (`frame_positions`), "
                f"got {frames_per_item} frames per item."
            )
        time = torch.arange(frames_per_item, device=features.device).repeat(inputs // frames_per_item)
        features = features + self.frame_feature_embeddings(time)[:, None].to(features.dtype)
        queries = queries + self.frame_query_embeddings(time)[:, None].to(queries.dtype)
        whole_videos = features.reshape(inputs // frames_per_item, frames_per_item * tokens, width)
        return whole_videos.repeat_interleave(frames_per_item, dim=0), queries
