"""X-LLM: frozen modality encoders connected to a frozen LLM through trainable X2L interfaces.

Importing the package registers its classes with transformers' Auto classes, so
`AutoModelForMultimodalLM.from_pretrained`, `AutoProcessor.from_pretrained` and
`pipeline("any-to-any")` work on saved X-LLM folders. Registering needs torch and transformers, which
take seconds to import, so it happens just before their first use (see `auto_registration.py`), and
the public names below load on first access: `import xllm` alone, and with it `xllm --help`, stays fast.
"""

from .auto_registration import register_before_first_use
from .lazy_exports import lazy_exports

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first access.
_EXPORTS = {
    "MODALITIES": "xllm.modeling_xllm",
    "PRESETS": "xllm.modeling_xllm",
    "XLLMConfig": "xllm.modeling_xllm",
    "XLLMForConditionalGeneration": "xllm.modeling_xllm",
    "XLLMInterfaceConfig": "xllm.modeling_xllm",
    "XLLMModalityFeatures": "xllm.modeling_xllm",
    "XLLMModel": "xllm.modeling_xllm",
    "XLLMPreTrainedModel": "xllm.modeling_xllm",
    "default_modality_cues": "xllm.modeling_xllm",
    "preset_config": "xllm.modeling_xllm",
    "XLLMProcessor": "xllm.processing",
    "XLLMVideoProcessor": "xllm.processing",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


register_before_first_use()
