"""X-LLM model classes: configuration, encoders, X2L interfaces and the composite model."""

from .configuration_xllm import MODALITIES, XLLMConfig, XLLMInterfaceConfig
from .modeling_xllm import XLLMForConditionalGeneration, XLLMModel, XLLMPreTrainedModel

__all__ = [
    "MODALITIES",
    "XLLMConfig",
    "XLLMForConditionalGeneration",
    "XLLMInterfaceConfig",
    "XLLMModel",
    "XLLMPreTrainedModel",
]
