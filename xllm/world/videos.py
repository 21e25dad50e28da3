"""Videos of the world: a coloured shape moving in one direction at one of two speeds.

Frames are drawn with the image renderer and encoded as H.264 mp4 files with torchcodec's
`VideoEncoder`, so they are real video files that `torchcodec.decoders.VideoDecoder` (and so
`datasets.Video` and transformers' video processors) read back.
"""

from pathlib import Path

import numpy as np

from .images import draw_shape, jittered_rgb

DIRECTION_STEPS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# Distance travelled per frame, as a fraction of the frame side.
SPEED_STEPS = {"slowly": 0.025, "quickly": 0.07}
SHAPE_RADIUS = 0.14
FRAMES_PER_SECOND = 4


def render_video_frames(
    attributes: dict[str, str], rng: np.random.Generator, frames: int = 8, side: int = 64
) -> np.ndarray:
    """Frames of an item with attributes colour, shape, direction and speed.

    Returns uint8 frames of shape (frames, 3, side, side). The start point is drawn so that the
    shape stays fully inside the frame for the whole path.
    """
    radius = SHAPE_RADIUS * side * rng.uniform(0.9, 1.1)
    step = np.array(DIRECTION_STEPS[attributes["direction"]]) * SPEED_STEPS[attributes["speed"]] * side
    travel = step * (frames - 1)
    low = radius + np.maximum(-travel, 0)
    high = side - radius - np.maximum(travel, 0)
    if np.any(low > high):
        raise ValueError(f"frames={frames} is too many for the shape to stay inside a {side}px frame")
    start = rng.uniform(low, high)
    rgb = jittered_rgb(attributes["colour"], rng)
    angle = np.deg2rad(rng.uniform(-15, 15))
    images = [
        np.asarray(draw_shape(attributes["shape"], rgb, tuple(start + t * step), radius, angle, side))
        for t in range(frames)
    ]
    return np.stack(images).transpose(0, 3, 1, 2)  # (frames, 3, side, side)


def encode_video(frames: np.ndarray, path: str | Path, frame_rate: float = FRAMES_PER_SECOND) -> None:
    """Write uint8 frames (frames, 3, height, width) to an mp4 file (H.264, near-lossless)."""
    import torch
    from torchcodec.encoders import VideoEncoder

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(
            f"frames must be uint8 (frames, 3, height, width), got {frames.dtype} {frames.shape}"
        )
    encoder = VideoEncoder(torch.from_numpy(np.ascontiguousarray(frames)), frame_rate=frame_rate)
    # One encoder thread keeps the output byte-identical from run to run.
    encoder.to_file(str(path), codec="libx264", crf=12, preset="ultrafast", extra_options={"threads": 1})
