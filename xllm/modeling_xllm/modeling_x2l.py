"""Base class of the X2L interfaces (Q-Former, C-Former, linear).

Each interface is a `PreTrainedModel` of its own: stage-1 pre-training saves and loads it alone
(`save_pretrained` / `from_pretrained`), and transformers dispatches its attention implementation
(`sdpa`, `eager`, flash) like any sub-model's.
"""

from transformers import PreTrainedModel

from .configuration_xllm import XLLMInterfaceConfig

# Kept in fp32 under fp16 and bf16: the learned queries and the LayerNorms (their outputs are cast
# back to the interface dtype in `forward`). The composite model declares them too, because
# transformers collects these names from direct children only (interfaces sit in a ModuleDict).
FP32_MODULES = ["query_tokens", "encoder_layer_norm", "embedding_layer_norm"]


class XLLMInterfacePreTrainedModel(PreTrainedModel):
    config: XLLMInterfaceConfig
    base_model_prefix = "interface"
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _keep_in_fp32_modules_strict = FP32_MODULES

    @property
    def num_output_tokens(self) -> int:
        """Embeddings per input item (per frame or window for videos and audio)."""
        return self.config.num_query_tokens


__all__ = ["FP32_MODULES", "XLLMInterfacePreTrainedModel"]
