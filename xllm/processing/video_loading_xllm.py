"""Videos decoded to the frames their video processor samples, whatever form they come in.

Files, encoded bytes, data URIs and base64 strings are decoded with torchcodec the way transformers decodes
a video file (exact seeking, the processor's `sample_frames` picks the frames, only those are decoded), so
a video gives the same pixels whichever form it came in; http(s) URLs go through transformers' own
`load_video`. Arrays and lists of frames are already decoded and pass through.
"""

import os
from collections.abc import Callable

import torch
from transformers.video_utils import VideoMetadata

from .media_bytes_xllm import encoded_media, is_url, missing_source_error

ENCODED_VIDEO_TYPES = (str, os.PathLike, bytes, bytearray, memoryview)


def is_encoded_video(video) -> bool:
    """Whether `video` still has to be decoded (a path, a URL, bytes, a data URI or base64)."""
    return isinstance(video, ENCODED_VIDEO_TYPES)


def decoded_video_metadata(decoder) -> VideoMetadata:
    """The metadata transformers' torchcodec reader gives the processor's frame sampler."""
    return VideoMetadata(
        total_num_frames=decoder.metadata.num_frames,
        fps=decoder.metadata.average_fps,
        duration=decoder.metadata.duration_seconds,
        video_backend="torchcodec",
        height=decoder.metadata.height,
        width=decoder.metadata.width,
    )


def load_video_frames(source, sample_indices: Callable[..., object], name: str) -> torch.Tensor:
    """(frames, channels, height, width) uint8: the frames `sample_indices(metadata=...)` picks."""
    source = os.fspath(source) if isinstance(source, os.PathLike) else source
    if isinstance(source, str) and is_url(source):
        from transformers.video_utils import load_video

        frames, _ = load_video(source, backend="torchcodec", sample_indices_fn=sample_indices)
        return frames
    if not (isinstance(source, str) and os.path.isfile(source)):
        encoded = encoded_media(source, name)
        if encoded is None:
            raise missing_source_error(source, name)
        source = encoded[0]
    from torchcodec.decoders import VideoDecoder

    shown = repr(source[:200]) if isinstance(source, str) else f"{len(source)} bytes"
    try:
        decoder = VideoDecoder(source, seek_mode="exact", num_ffmpeg_threads=0)
        indices = sample_indices(metadata=decoded_video_metadata(decoder))
        return decoder.get_frames_at(indices=indices).data.contiguous()
    except (RuntimeError, ValueError) as error:  # torchcodec reports what ffmpeg cannot open as either
        raise ValueError(f"`{name}` must be a video that decodes; {shown} did not ({error})") from error


__all__ = ["decoded_video_metadata", "is_encoded_video", "load_video_frames"]
