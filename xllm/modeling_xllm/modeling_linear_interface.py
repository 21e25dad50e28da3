"""The linear interface: X-InstructBLIP's ablation of the Q-Former.

Encoder tokens are normalised and mean-pooled, one linear map expands the pooled vector into
`num_query_tokens` vectors of width `hidden_size`, and a second (the adapter) maps each into the LLM's
width. It has no queries, no attention and no instruction: the paper reports that replacing a Q-Former
with it halves image-3D DisCRn accuracy.

`config.linear_variant` chooses what runs between the two maps:
* `lavis`: nothing, LAVIS' layout (`projection_only` with `proj_dim: 768`,
  `lavis/models/blip2_models/blip2_vicuna_xinstruct.py`): `{m}_projection` (encoder width ->
  queries x 768, lines 334-340) on `ln(encoder(x)).mean(1)` (lines 621, 637), reshaped to
  (queries, 768), then `{m}_llm_proj` (768 -> LLM width, lines 432-437, 692, 707). Released files
  convert with `convert_lavis.py`;
* `gelu_between`: a GELU between them (this package's earlier linear interface).
"""

import torch
from torch import nn

from .configuration_xllm import XLLMInterfaceConfig
from .modeling_x2l import XLLMInterfacePreTrainedModel


class LinearInterface(XLLMInterfacePreTrainedModel):
    """Encoder features -> LayerNorm -> mean pool -> Linear to `num_query_tokens` x hidden -> [GELU] -> adapter."""

    def __init__(self, config: XLLMInterfaceConfig):
        super().__init__(config)
        self.encoder_layer_norm = nn.LayerNorm(config.encoder_hidden_size, eps=config.encoder_layer_norm_eps)
        self.expand = nn.Linear(config.encoder_hidden_size, config.num_query_tokens * config.hidden_size)
        self.activation = nn.GELU() if config.linear_variant == "gelu_between" else nn.Identity()
        self.adapter = nn.Linear(config.hidden_size, config.output_hidden_size)
        self.post_init()

    def forward(
        self,
        encoder_hidden_states: torch.Tensor,
        instruction_ids: torch.Tensor | None = None,
        instruction_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """(inputs, encoder_tokens, encoder_width) -> (inputs, num_query_tokens, llm_width); the
        instruction is accepted for a common signature and ignored."""
        norm_dtype = self.encoder_layer_norm.weight.dtype
        features = self.encoder_layer_norm(encoder_hidden_states.to(norm_dtype)).to(self.adapter.weight.dtype)
        pooled = features.mean(dim=1)  # (inputs, encoder_width)
        tokens = self.expand(pooled).view(
            pooled.shape[0], self.config.num_query_tokens, self.config.hidden_size
        )
        return self.adapter(self.activation(tokens))


__all__ = ["LinearInterface"]
