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

# The module that defines each public name, imported on first access.
_EXPORTS = {
    "xllm.modeling_xllm": [
        "MODALITIES",
        "PRESETS",
        "XLLMConfig",
        "XLLMForConditionalGeneration",
        "XLLMInterfaceConfig",
        "XLLMModalityFeatures",
        "XLLMModel",
        "XLLMPreTrainedModel",
        "default_modality_cues",
        "preset_config",
    ],
    "xllm.processing": ["XLLMProcessor", "XLLMVideoProcessor"],
    "xllm.processor_presets": ["preset_processor"],
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


register_before_first_use()
