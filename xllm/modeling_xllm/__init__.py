"""X-LLM model classes: configuration, encoders, X2L interfaces and the composite model."""

from .configuration_presets import PRESETS, preset_config, x_instructblip_config, x_llm_config
from .configuration_xllm import DEFAULT_MODALITY_CUES, MODALITIES, XLLMConfig, XLLMInterfaceConfig
from .modeling_xllm import XLLMForConditionalGeneration, XLLMModel, XLLMPreTrainedModel

__all__ = [
    "DEFAULT_MODALITY_CUES",
    "MODALITIES",
    "PRESETS",
    "preset_config",
    "x_instructblip_config",
    "x_llm_config",
    "XLLMConfig",
    "XLLMForConditionalGeneration",
    "XLLMInterfaceConfig",
    "XLLMModel",
    "XLLMPreTrainedModel",
]
