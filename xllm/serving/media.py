"""Media from a request: where a URL may lead, and how large what it leads to may be.

Every URL a client sends is resolved here, before the processor sees anything (transformers'
`load_image`, which the processor calls for strings, would fetch any http(s) URL and read any local path):

* `data:` URIs are decoded (a `data:` URI that does not decode is refused, naming the field);
* `file://` URLs and bare paths are read only inside `--media-root`, by the manifests' rule
  (`manifests.confined_path`: symlinks and `..` resolved, the result must still be inside);
* http(s) URLs are fetched only with `--allow-remote-media`, at most `max_media_bytes`, with a timeout,
  following redirects to http(s) only;
* any other scheme is refused.

The processor then gets bytes. Before that, each modality's bytes are checked against the limits from
what their headers say, without decoding them whole: an image's pixel count (a 20000 x 20000 PNG is a few
KB), a clip's duration (an hour of silence compresses to a few hundred KB; clips are decoded here, never
past the limit), a video's frame count and frame size.
"""

import io
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image

from xllm.manifests import confined_path
from xllm.processing.media_bytes_xllm import data_uri_contents

from .errors import RequestError
from .limits import ServingLimits


@dataclass(frozen=True)
class MediaAccess:
    """Where media URLs may lead: files under `media_root` (None: no local files), remote URLs only when
    `allow_remote_media`."""

    media_root: Path | None = None
    allow_remote_media: bool = False
    fetch_timeout_seconds: float = 10.0

    def read(self, url, param: str, limits: ServingLimits) -> bytes:
        """The bytes a media URL names, or a RequestError naming `param`."""
        if not isinstance(url, str) or not url:
            raise RequestError(f"`{param}` must be a non-empty URL string, got {url!r}.", param)
        if url.startswith("data:"):
            try:
                return data_uri_contents(url, param)[1]
            except ValueError as error:
                raise RequestError(str(error), param) from error
        scheme = urllib.parse.urlparse(url).scheme.lower()
        if scheme in ("http", "https"):
            return self._fetch(url, param, limits)
        if scheme in ("file", ""):
            path = urllib.parse.unquote(urllib.parse.urlparse(url).path) if scheme == "file" else url
            return self._read_local(path, param, limits)
        raise RequestError(
            f"`{param}` has URL scheme {scheme!r}; expected a data: URI, a file under --media-root or an http(s) "
            "URL (with --allow-remote-media).",
            param,
        )

    def _read_local(self, path: str, param: str, limits: ServingLimits) -> bytes:
        if self.media_root is None:
            raise RequestError(
                f"`{param}` names a local file ({path[:200]!r}); this server reads no local files. Send the media "
                "as a data: URI, or start the server with --media-root DIR to serve files under DIR.",
                param,
            )
        resolved = confined_path(path, self.media_root)
        if resolved is None:
            raise RequestError(f"`{param}` resolves outside --media-root: {path[:200]!r}.", param)
        if not resolved.is_file():
            raise RequestError(f"`{param}` names no file under --media-root: {path[:200]!r}.", param)
        size = resolved.stat().st_size
        if size > limits.max_media_bytes:
            raise media_too_large(param, size, limits)
        return resolved.read_bytes()

    def _fetch(self, url: str, param: str, limits: ServingLimits) -> bytes:
        if not self.allow_remote_media:
            raise RequestError(
                f"`{param}` is a remote URL; this server fetches no remote media. Send the media as a data: URI, "
                "or start the server with --allow-remote-media.",
                param,
            )
        try:
            with remote_opener().open(url, timeout=self.fetch_timeout_seconds) as response:
                data = response.read(limits.max_media_bytes + 1)
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise RequestError(f"`{param}` could not be fetched: {error}.", param) from error
        if len(data) > limits.max_media_bytes:
            raise media_too_large(param, len(data), limits)
        return data


class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are followed to http(s) URLs only (never to file:// or ftp://)."""

    def redirect_request(self, request, fp, code, message, headers, new_url):
        if urllib.parse.urlparse(new_url).scheme.lower() not in ("http", "https"):
            raise urllib.error.URLError(f"redirect to a non-http(s) URL refused: {new_url[:200]!r}")
        return super().redirect_request(request, fp, code, message, headers, new_url)


def remote_opener() -> urllib.request.OpenerDirector:
    """An opener that speaks http(s) only: no file, ftp or data handlers, redirects to http(s) only."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        HttpOnlyRedirects(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),
    ):
        opener.add_handler(handler)
    return opener


def media_too_large(param: str, size: int, limits: ServingLimits) -> RequestError:
    return RequestError(
        f"`{param}` is {size} bytes; the limit is {limits.max_media_bytes} (--max-media-bytes).",
        param,
        status=413,
        code="media_too_large",
    )


def check_image(data: bytes, param: str, limits: ServingLimits) -> None:
    """The image's size from its header (PIL opens lazily), against `max_image_pixels`."""
    try:
        width, height = PIL.Image.open(io.BytesIO(data)).size
    except PIL.Image.DecompressionBombError as error:  # PIL's own ceiling (far above ours) says the count
        counted = re.search(r"\((\d+) pixels\)", str(error))
        pixels = counted.group(1) if counted else f"more than {2 * PIL.Image.MAX_IMAGE_PIXELS}"
        raise too_many_pixels(param, pixels, limits) from error
    except (OSError, ValueError) as error:
        raise RequestError(f"`{param}` does not decode as an image ({error}).", param) from error
    if width * height > limits.max_image_pixels:
        raise too_many_pixels(param, f"{width}x{height} = {width * height}", limits)


def too_many_pixels(param: str, pixels: str, limits: ServingLimits) -> RequestError:
    return RequestError(
        f"`{param}` has {pixels} pixels; the limit is {limits.max_image_pixels} (--max-image-pixels).",
        param,
        code="image_too_large",
    )


def decoded_clip(data: bytes, param: str, limits: ServingLimits) -> dict:
    """The clip's samples, `{"array": (channels, samples), "sampling_rate"}`, decoded here and never past
    `max_audio_seconds` (a header may lie about the duration; the decoder stops at the limit)."""
    from torchcodec.decoders import AudioDecoder

    limit = limits.max_audio_seconds
    try:
        decoder = AudioDecoder(data)
        declared = decoder.metadata.duration_seconds_from_header
        if declared is not None and declared > limit:
            raise clip_too_long(param, f"{declared:.1f} s", limit)
        rate = decoder.metadata.sample_rate
        samples = decoder.get_samples_played_in_range(0.0, limit + 1.0 / rate)
    except RuntimeError as error:  # torchcodec reports what ffmpeg cannot open as a RuntimeError
        raise RequestError(f"`{param}` does not decode as audio ({error}).", param) from error
    if samples.data.shape[-1] > limit * rate:
        raise clip_too_long(param, f"more than {limit} s", limit)
    return {"array": np.ascontiguousarray(samples.data.numpy()), "sampling_rate": samples.sample_rate}


def clip_too_long(param: str, duration: str, limit: float) -> RequestError:
    return RequestError(
        f"`{param}` is {duration} of audio; the limit is {limit} s (--max-audio-seconds).",
        param,
        code="audio_too_long",
    )


def check_video(data: bytes, param: str, limits: ServingLimits) -> None:
    """Frame count and frame size from the container's header, against the limits."""
    from torchcodec.decoders import VideoDecoder

    try:
        metadata = VideoDecoder(data, seek_mode="approximate").metadata
    except (RuntimeError, ValueError) as error:
        raise RequestError(f"`{param}` does not decode as a video ({error}).", param) from error
    frames = metadata.num_frames
    if frames is None and metadata.duration_seconds and metadata.average_fps:
        frames = round(metadata.duration_seconds * metadata.average_fps)
    if frames is None:
        raise RequestError(f"`{param}` does not say how many frames it has; it cannot be checked.", param)
    if frames > limits.max_video_frames:
        raise RequestError(
            f"`{param}` has {frames} frames; the limit is {limits.max_video_frames} (--max-video-frames).",
            param,
            code="video_too_long",
        )
    if (metadata.width or 0) * (metadata.height or 0) > limits.max_image_pixels:
        raise too_many_pixels(param, f"{metadata.width}x{metadata.height} per frame", limits)


__all__ = ["MediaAccess", "check_image", "check_video", "decoded_clip"]
