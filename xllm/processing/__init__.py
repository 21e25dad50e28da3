"""Processors: one `XLLMProcessor` over the tokenizers and per-modality processors, and the modality
table they follow (`processor_modalities.py`). The names below load on first access, so that the table
imports without torch."""

from xllm.lazy_exports import lazy_exports

# The module that defines each public name, imported on first access.
_EXPORTS = {
    "xllm.processing.feature_extraction_audio_xllm": ["XLLMAudioFeatureExtractor"],
    "xllm.processing.feature_extraction_point_cloud_xllm": ["XLLMPointCloudFeatureExtractor"],
    "xllm.processing.processing_xllm": ["XLLMProcessor"],
    "xllm.processing.feature_extraction_speech_xllm": ["XLLMSpeechFeatureExtractor"],
    "xllm.processing.video_processing_xllm": ["XLLMVideoProcessor"],
    "xllm.processing.audio_loading_xllm": ["load_audio"],
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
