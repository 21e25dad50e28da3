"""Processors: one `XLLMProcessor` over the tokenizers and per-modality processors."""

from .processing_xllm import XLLMProcessor
from .video_processing_xllm import XLLMVideoProcessor

__all__ = ["XLLMProcessor", "XLLMVideoProcessor"]
