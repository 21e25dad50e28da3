"""X-LLM model classes: the modality table, configuration, encoders, X2L interfaces and the composite model.

The names below load on first access, so that the modality table (`model_modalities.py`) imports without
torch; importing any of them registers the classes with transformers' Auto classes (see
`xllm/auto_registration.py`).
"""

from xllm.lazy_exports import lazy_exports

# The module that defines each public name, imported on first access.
_EXPORTS = {
    "xllm.modeling_xllm.model_modalities": ["MODALITIES", "ModelModality", "default_modality_cues"],
    "xllm.modeling_xllm.configuration_presets": [
        "PRESETS",
        "preset_config",
        "x_instructblip_config",
        "x_llm_config",
    ],
    "xllm.modeling_xllm.configuration_xllm": ["XLLMConfig", "XLLMInterfaceConfig"],
    "xllm.modeling_xllm.modeling_xllm": [
        "XLLMForConditionalGeneration",
        "XLLMModalityFeatures",
        "XLLMModel",
        "XLLMPreTrainedModel",
    ],
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
