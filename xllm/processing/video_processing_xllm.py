"""Video processor: uniform sampling of a fixed number of frames from a video of any length."""

import warnings

import numpy as np
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata


class XLLMVideoProcessor(BaseVideoProcessor):
    """BLIP-style frame preprocessing (224 px, CLIP mean/std) with uniform frame sampling.

    `num_frames` frames are taken at the centres of equal segments of the video. A video shorter
    than that repeats frames (with a warning) rather than failing, so a batch always has one frame
    count. Returns `pixel_values_videos` of shape (videos, frames, channels, height, width).
    """

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"height": 224, "width": 224}
    default_to_square = True
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 5
    model_input_names = ["pixel_values_videos"]

    def sample_frames(
        self, metadata: VideoMetadata, num_frames: int | None = None, fps: float | None = None, **kwargs
    ) -> np.ndarray:
        total = metadata.total_num_frames
        if not total:
            raise ValueError("`videos` contains a video with zero frames; expected at least one frame.")
        if num_frames is None and fps is not None:
            if not metadata.fps:
                raise ValueError("Sampling by `fps` needs the video's frame rate, which its metadata lacks.")
            num_frames = max(1, int(total / metadata.fps * fps))
        num_frames = num_frames or self.num_frames
        if num_frames > total:
            warnings.warn(
                f"A video has {total} frames but {num_frames} were requested; frames are repeated.",
                stacklevel=2,
            )
        return ((np.arange(num_frames) + 0.5) * total / num_frames).astype(int)


__all__ = ["XLLMVideoProcessor"]
