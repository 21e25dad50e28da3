"""X-LLM: frozen modality encoders connected to a frozen LLM through trainable X2L interfaces.

Importing the package registers its classes with transformers' Auto classes, so
`AutoModelForMultimodalLM.from_pretrained`, `AutoProcessor.from_pretrained` and
`pipeline("any-to-any")` work on saved X-LLM folders.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoProcessor,
    AutoVideoProcessor,
)

from .hub import register_model_card_writer
from .modeling_xllm import (
    DEFAULT_MODALITY_CUES,
    MODALITIES,
    PRESETS,
    XLLMConfig,
    XLLMForConditionalGeneration,
    XLLMInterfaceConfig,
    XLLMModel,
    XLLMPreTrainedModel,
    preset_config,
)
from .processing import XLLMProcessor, XLLMVideoProcessor

AutoConfig.register("xllm", XLLMConfig, exist_ok=True)
AutoConfig.register("xllm_interface", XLLMInterfaceConfig, exist_ok=True)
AutoModel.register(XLLMConfig, XLLMModel, exist_ok=True)
AutoModelForMultimodalLM.register(XLLMConfig, XLLMForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(XLLMConfig, XLLMForConditionalGeneration, exist_ok=True)
AutoProcessor.register(XLLMConfig, XLLMProcessor, exist_ok=True)
AutoVideoProcessor.register(XLLMConfig, XLLMVideoProcessor, exist_ok=True)
register_model_card_writer()  # every saved model folder gets its README.md model card

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODALITY_CUES",
    "MODALITIES",
    "PRESETS",
    "preset_config",
    "XLLMConfig",
    "XLLMForConditionalGeneration",
    "XLLMInterfaceConfig",
    "XLLMModel",
    "XLLMPreTrainedModel",
    "XLLMProcessor",
    "XLLMVideoProcessor",
]
