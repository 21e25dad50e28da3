"""The speech interface of X-LLM: C-Former (CIF + transformer) and S-Adapter.

CIF compresses the U frame-level outputs of the speech encoder into L token-level embeddings
(L is about the transcript length, U is several times L); a transformer stack gives the tokens
context; the S-Adapter projects them into the LLM's input space. The number of tokens depends
on the input, so the model splices them into the LLM sequence itself (see `modeling_splice`).
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .configuration_xllm import XLLMInterfaceConfig
from .modeling_cif import ContinuousIntegrateAndFire
from .modeling_qformer import QFormerAttention, QFormerFeedForward
from .modeling_x2l import XLLMInterfacePreTrainedModel


@dataclass
class CFormerOutput(ModelOutput):
    """token_embeddings (items, max_tokens, llm_width), zero beyond each item's length;
    token_lengths (items,); alphas (items, frames) CIF weights; quantity_loss (scalar) in training."""

    token_embeddings: torch.Tensor | None = None
    token_lengths: torch.Tensor | None = None
    alphas: torch.Tensor | None = None
    quantity_loss: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None


class CFormerLayer(GradientCheckpointingLayer):
    """Self-attention over the fired tokens, then feed-forward (BERT post-LN blocks)."""

    def __init__(self, config: XLLMInterfaceConfig):
        super().__init__()
        self.self_attention = QFormerAttention(config, key_value_size=config.hidden_size)
        self.feed_forward = QFormerFeedForward(config)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, **kwargs
    ) -> torch.Tensor:
        hidden_states = self.self_attention(hidden_states, hidden_states, attention_mask, **kwargs)
        return self.feed_forward(hidden_states)


class CFormerInterface(XLLMInterfacePreTrainedModel):
    """Speech encoder frames -> LayerNorm -> CIF -> transformer (C-Former) -> S-Adapter."""

    _no_split_modules = ["CFormerLayer"]

    def __init__(self, config: XLLMInterfaceConfig):
        super().__init__(config)
        self.encoder_layer_norm = nn.LayerNorm(config.encoder_hidden_size, eps=config.encoder_layer_norm_eps)
        self.cif = ContinuousIntegrateAndFire(
            config.encoder_hidden_size,
            threshold=config.cif_threshold,
            tail_threshold=config.cif_tail_threshold,
        )
        self.input_projection = nn.Linear(config.encoder_hidden_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.embedding_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(CFormerLayer(config) for _ in range(config.num_hidden_layers))
        self.adapter = nn.Linear(config.hidden_size, config.output_hidden_size)
        self.post_init()

    @property
    def num_output_tokens(self) -> None:
        """Variable: CIF decides the number of tokens per input."""
        return None

    def forward(
        self,
        encoder_hidden_states: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
        target_lengths: torch.Tensor | None = None,
        **kwargs,
    ) -> CFormerOutput:
        """encoder_hidden_states (items, frames, encoder_width); frame_mask (items, frames) True on
        real frames; target_lengths (items,) transcript token counts during training, else None."""
        norm_dtype = self.encoder_layer_norm.weight.dtype
        frames = self.encoder_layer_norm(encoder_hidden_states.to(norm_dtype)).to(self.adapter.weight.dtype)
        cif = self.cif(frames, frame_mask, target_lengths)
        tokens = cif.token_embeddings  # (items, max_tokens, encoder_width)
        num_tokens = tokens.shape[1]
        if num_tokens > self.config.max_position_embeddings:
            raise ValueError(
                f"CIF fired {num_tokens} tokens, more than the C-Former's max_position_embeddings "
                f"({self.config.max_position_embeddings}); shorten the audio or raise the limit."
            )
        positions = torch.arange(num_tokens, device=tokens.device)
        hidden_states = self.input_projection(tokens) + self.position_embeddings(positions)
        hidden_states = self.embedding_layer_norm(hidden_states.to(norm_dtype)).to(self.adapter.weight.dtype)
        token_mask = positions.unsqueeze(0) < cif.token_lengths.unsqueeze(1)  # (items, max_tokens)
        attention_mask = create_bidirectional_mask(
            self.config, inputs_embeds=hidden_states, attention_mask=token_mask
        )
        for layer in self.layers if num_tokens else ():  # no layer to run when nothing fired
            hidden_states = layer(hidden_states, attention_mask, **kwargs)
        embeddings = self.adapter(hidden_states) * token_mask.unsqueeze(-1)  # zero beyond each length
        return CFormerOutput(
            token_embeddings=embeddings,
            token_lengths=cif.token_lengths,
            alphas=cif.alphas,
            quantity_loss=cif.quantity_loss,
            hidden_states=hidden_states,
        )


__all__ = ["CFormerInterface", "CFormerOutput"]
