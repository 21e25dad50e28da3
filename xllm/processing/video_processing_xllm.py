"""Video processor: a fixed number of frames from a video of any length, sampled one of two ways.

* `"uniform"` (default): the centres of `num_frames` equal segments of the video.
* `"headtail"`: X-InstructBLIP's evaluation sampling (LAVIS `lavis/datasets/data_utils.py:316-342`,
  `head_tail_frame_sampling`, called by `AlproVideoEvalProcessor` at `lavis/processors/alpro_processors.py:228-237`):
  the first frame, `num_frames - 2` frames at multiples of `last // (num_frames - 1)`, and the last frame.
"""

import warnings

import numpy as np
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from transformers.processing_utils import VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata

FRAME_SAMPLINGS = ("uniform", "headtail")


class XLLMVideoProcessorKwargs(VideosKwargs, total=False):
    frame_sampling: str


class XLLMVideoProcessor(BaseVideoProcessor):
    """BLIP-style frame preprocessing (224 px, CLIP mean/std) with `num_frames` frames per video.

    `frame_sampling` picks the frames (see the module docstring): `"uniform"` segment centres, or
    `"headtail"` (first, evenly spaced, last) as X-InstructBLIP's evaluation does. A video shorter than
    `num_frames` repeats frames (with a warning) rather than failing, so a batch always has one frame
    count. Returns `pixel_values_videos` of shape (videos, frames, channels, height, width).
    """

    valid_kwargs = XLLMVideoProcessorKwargs
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
    frame_sampling = "uniform"
    model_input_names = ["pixel_values_videos"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.frame_sampling not in FRAME_SAMPLINGS:
            raise ValueError(
                f"`frame_sampling` must be one of {list(FRAME_SAMPLINGS)}, got {self.frame_sampling!r}."
            )

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
        if self.frame_sampling == "headtail":
            return headtail_frame_indices(total, num_frames)
        return ((np.arange(num_frames) + 0.5) * total / num_frames).astype(int)


def headtail_frame_indices(total: int, num_frames: int) -> np.ndarray:
    """First frame, `num_frames - 2` frames `last // (num_frames - 1)` apart, last frame (LAVIS
    `data_utils.py:328`). LAVIS's last index is `int(frames / fps * fps)`, which is the frame count itself
    when the float product rounds exactly: OpenCV then cannot read it and `AlproVideoEvalProcessor` repeats
    the previous frame (`alpro_processors.py:251-255`); here it is always the last frame, `total - 1`."""
    if num_frames < 2:
        raise ValueError(
            f"'headtail' frame sampling takes the first and the last frame: `num_frames` must be at least 2, got {num_frames}."
        )
    last = total - 1
    step = last // (num_frames - 1)
    return np.array([0, *(step * i for i in range(1, num_frames - 1)), last])


__all__ = ["XLLMVideoProcessor", "headtail_frame_indices"]
