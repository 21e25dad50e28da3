"""Processors: one `XLLMProcessor` over the tokenizers and per-modality processors."""

from .audio_loading_xllm import load_audio
from .feature_extraction_audio_xllm import XLLMAudioFeatureExtractor
from .feature_extraction_point_cloud_xllm import XLLMPointCloudFeatureExtractor
from .feature_extraction_speech_xllm import XLLMSpeechFeatureExtractor
from .processing_xllm import XLLMProcessor
from .video_processing_xllm import XLLMVideoProcessor

__all__ = [
    "XLLMAudioFeatureExtractor",
    "XLLMPointCloudFeatureExtractor",
    "XLLMProcessor",
    "XLLMSpeechFeatureExtractor",
    "XLLMVideoProcessor",
    "load_audio",
]
