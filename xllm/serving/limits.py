"""What one request may ask of the server: a shared machine must not be made to hold an unbounded body,
decode a decompression bomb, an hour of audio or a film, or generate a billion tokens."""

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class ServingLimits:
    """Every limit has a `xllm serve` flag of the same name (`--max-image-pixels`)."""

    max_request_bytes: int = 32 * MIB  # the JSON body, media included (base64 grows media by a third)
    max_media_bytes: int = 32 * MIB  # one media file read from --media-root or fetched remotely
    max_image_pixels: int = 50_000_000  # width x height of an image or of a video frame
    max_audio_seconds: float = 600.0  # one speech or sound clip
    max_video_frames: int = 20_000  # frames in one video file (only a few are sampled, all are indexed)
    max_media_items: int = 16  # media parts in one request
    max_tokens: int = 1024  # `max_tokens` / `max_completion_tokens`, and the default's ceiling
    max_choices: int = 8  # `n`
    max_beams: int = 8  # `num_beams` (an extension field)
    max_concurrent_requests: int = 64  # requests being prepared, queued or generated at once (429 beyond)

    def __post_init__(self):
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"`{name}` must be positive, got {value!r}")


__all__ = ["MIB", "ServingLimits"]
