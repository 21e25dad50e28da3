"""X-LLM model classes: the modality table, configuration, encoders, X2L interfaces and the composite model.

The names below load on first access, so that the modality table (`model_modalities.py`) imports without
torch; importing any of them registers the classes with transformers' Auto classes (see
`xllm/auto_registration.py`).
"""

from xllm.lazy_exports import lazy_exports

# Public name -> the module that defines it.
_EXPORTS = {
    "MODALITIES": "xllm.modeling_xllm.model_modalities",
    "ModelModality": "xllm.modeling_xllm.model_modalities",
    "default_modality_cues": "xllm.modeling_xllm.model_modalities",
    "PRESETS": "xllm.modeling_xllm.configuration_presets",
    "preset_config": "xllm.modeling_xllm.configuration_presets",
    "x_instructblip_config": "xllm.modeling_xllm.configuration_presets",
    "x_llm_config": "xllm.modeling_xllm.configuration_presets",
    "XLLMConfig": "xllm.modeling_xllm.configuration_xllm",
    "XLLMInterfaceConfig": "xllm.modeling_xllm.configuration_xllm",
    "XLLMForConditionalGeneration": "xllm.modeling_xllm.modeling_xllm",
    "XLLMModalityFeatures": "xllm.modeling_xllm.modeling_xllm",
    "XLLMModel": "xllm.modeling_xllm.modeling_xllm",
    "XLLMPreTrainedModel": "xllm.modeling_xllm.modeling_xllm",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
