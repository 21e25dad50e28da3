"""Processors: one `XLLMProcessor` over the tokenizers and per-modality processors, and the modality
table they follow (`processor_modalities.py`). The names below load on first access, so that the table
imports without torch."""

from xllm.lazy_exports import lazy_exports

# Public name -> the module that defines it.
_EXPORTS = {
    "XLLMAudioFeatureExtractor": "xllm.processing.feature_extraction_audio_xllm",
    "XLLMPointCloudFeatureExtractor": "xllm.processing.feature_extraction_point_cloud_xllm",
    "XLLMProcessor": "xllm.processing.processing_xllm",
    "XLLMSpeechFeatureExtractor": "xllm.processing.feature_extraction_speech_xllm",
    "XLLMVideoProcessor": "xllm.processing.video_processing_xllm",
    "load_audio": "xllm.processing.audio_loading_xllm",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
