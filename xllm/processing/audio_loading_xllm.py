"""Turn any audio input into a mono float32 waveform at a target sampling rate.

Every audio feature extractor of the package loads its inputs here, so all of them accept the same things:

- numpy arrays and torch tensors: 1-D mono `(samples,)`, or 2-D multi-channel audio, down-mixed by averaging
  the channels;
- a list of numbers (one mono waveform);
- a file path (`str` or `os.PathLike`);
- encoded bytes: `bytes`, a data URI (`data:audio/wav;base64,...`) or a base64 string (`media_bytes_xllm.py`);
- the dicts that `datasets` produces: `{"array", "sampling_rate"}`, `{"path"}` or `{"bytes"}` (bytes win when
  both bytes and path are given, as in `datasets`);
- the torchcodec `AudioDecoder` objects that a `datasets.Audio` column decodes to (datasets 4 and later).

Channel axis of a 2-D array: audio has far more samples than channels, so the shorter axis is the channel axis
(a square array is read as torch's `(channels, samples)` layout). At most `MAX_CHANNELS` channels are accepted:
a longer "channel" axis almost always means a batch passed as one array, which is rejected; pass a batch as a
list instead.

Multi-channel audio is averaged into one channel with a warning that says so (every encoder reads mono).

Integer PCM is scaled to [-1, 1] (int16 divided by 32768, and so on); floats are kept as they are.

Backends: `"torch"` decodes files with torchcodec and resamples with torchaudio; `"numpy"` reads WAV files with
`scipy.io.wavfile` and resamples with `scipy.signal.resample_poly`. `"auto"` (the default) takes the
`XLLM_AUDIO_BACKEND` environment variable when it is set, and otherwise uses torch wherever it imports.
"""

import functools
import importlib
import io
import math
import numbers
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from .media_bytes_xllm import encoded_media, is_url, missing_source_error

BACKENDS = ("auto", "torch", "numpy")
BACKEND_ENV_VAR = "XLLM_AUDIO_BACKEND"
MAX_CHANNELS = 8


@functools.cache
def _importable(module: str) -> bool:
    """Whether `module` imports; a torchaudio built for another torch fails with OSError or RuntimeError."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def select_backend(backend: str, torch_module: str) -> str:
    """Resolve `backend` to "torch" or "numpy" for a step that `torch_module` implements on the torch side."""
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV_VAR, "auto")
    if backend not in BACKENDS:
        raise ValueError(f"`backend` (or ${BACKEND_ENV_VAR}) must be one of {BACKENDS}, got {backend!r}")
    if backend == "numpy":
        return "numpy"
    if _importable(torch_module):
        return "torch"
    if backend == "torch":
        raise ImportError(f"backend='torch' needs `{torch_module}`, which does not import here")
    return "numpy"


def _check_sampling_rate(sampling_rate: float, name: str) -> int:
    if isinstance(sampling_rate, bool) or int(sampling_rate) != sampling_rate or sampling_rate <= 0:
        raise ValueError(f"`{name}` must be a positive whole number of Hz, got {sampling_rate!r}")
    return int(sampling_rate)


def resample(
    waveform: np.ndarray, orig_sampling_rate: int, target_sampling_rate: int, backend: str = "auto"
) -> np.ndarray:
    """Resample a mono float32 waveform `(samples,)`; the output has ceil(samples * target / orig) samples."""
    orig_sampling_rate = _check_sampling_rate(orig_sampling_rate, "orig_sampling_rate")
    target_sampling_rate = _check_sampling_rate(target_sampling_rate, "target_sampling_rate")
    if orig_sampling_rate == target_sampling_rate:
        return waveform
    if select_backend(backend, "torchaudio") == "torch":
        import torchaudio.functional

        resampled = torchaudio.functional.resample(
            torch.from_numpy(waveform), orig_sampling_rate, target_sampling_rate
        )
        return resampled.numpy()
    from scipy.signal import resample_poly

    common = math.gcd(orig_sampling_rate, target_sampling_rate)
    resampled = resample_poly(waveform, target_sampling_rate // common, orig_sampling_rate // common)
    return resampled.astype(np.float32)


def _read_file(source: str | bytes, backend: str, name: str) -> tuple[np.ndarray, int, int]:
    """Decode a file path, a data URI, a base64 string or encoded bytes into (samples array, sampling
    rate, channel axis)."""
    if isinstance(source, str) and not os.path.isfile(source):
        if is_url(source):
            raise ValueError(
                f"`{name}` is a URL; audio is not downloaded, pass the file, its bytes or a data URI"
            )
        encoded = encoded_media(source, name)
        if encoded is None:
            raise missing_source_error(source, name)
        source = encoded[0]
    if select_backend(backend, "torchcodec") == "torch":
        from torchcodec.decoders import AudioDecoder

        try:
            return _decoder_samples(AudioDecoder(source))
        except RuntimeError as error:  # torchcodec reports what ffmpeg cannot open as a RuntimeError
            shown = source if isinstance(source, str) else f"{len(source)} bytes"
            raise ValueError(f"`{name}` does not decode as audio ({shown}): {error}") from error
    return _read_wav_with_scipy(source, name)


def _read_wav_with_scipy(source: str | bytes, name: str) -> tuple[np.ndarray, int, int]:
    from scipy.io import wavfile

    try:
        sampling_rate, samples = wavfile.read(io.BytesIO(source) if isinstance(source, bytes) else source)
    except ValueError as error:
        raise ValueError(
            f"`{name}` could not be read as WAV ({error}); install torchcodec to decode other formats"
        ) from error
    return samples, sampling_rate, 1  # scipy returns (samples, channels)


def _decoder_samples(decoder) -> tuple[np.ndarray, int, int]:
    """All samples of a torchcodec AudioDecoder, which returns (channels, samples)."""
    samples = decoder.get_all_samples()
    return samples.data.numpy(), samples.sample_rate, 0


def _decode_dict(audio: dict, backend: str, name: str) -> tuple[np.ndarray, int, int | None]:
    if "array" in audio:
        if audio.get("sampling_rate") is None:
            raise ValueError(f"`{name}` has an 'array' but no 'sampling_rate'; got keys {sorted(audio)}")
        return _as_numpy(audio["array"]), audio["sampling_rate"], None
    if audio.get("bytes") is not None:
        return _read_file(audio["bytes"], backend, name)
    if audio.get("path") is not None:
        return _read_file(os.fspath(audio["path"]), backend, name)
    raise ValueError(
        f"`{name}` must be a dict with 'array' and 'sampling_rate', 'bytes' or 'path'; got keys {sorted(audio)}"
    )


def _decode(
    audio, sampling_rate: int | None, default_sampling_rate: int, backend: str, name: str
) -> tuple[np.ndarray, int, int | None]:
    """Any supported input -> (samples array, its sampling rate, channel axis or None to detect it)."""
    if isinstance(audio, (str, os.PathLike)):
        return _read_file(os.fspath(audio), backend, name)
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return _read_file(bytes(audio), backend, name)
    if isinstance(audio, dict):
        return _decode_dict(audio, backend, name)
    if hasattr(audio, "get_all_samples"):  # a torchcodec AudioDecoder, as datasets.Audio columns decode to
        return _decoder_samples(audio)
    if isinstance(audio, (np.ndarray, torch.Tensor, list, tuple)):
        return _as_numpy(audio), sampling_rate or default_sampling_rate, None
    raise ValueError(
        f"`{name}` must be an array, a tensor, a list of floats, a path, bytes, a data URI, base64, a dict or "
        f"an AudioDecoder, got {type(audio).__name__}"
    )


def _as_numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        return (array.float() if array.dtype in (torch.float16, torch.bfloat16) else array).numpy()
    return np.asarray(array)


def _to_float32(samples: np.ndarray, name: str) -> np.ndarray:
    """Floats pass through; integer PCM is scaled to [-1, 1] the way WAV defines it."""
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32)
    if np.issubdtype(samples.dtype, np.signedinteger):
        return (samples / -float(np.iinfo(samples.dtype).min)).astype(np.float32)
    if samples.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        return ((samples - 128.0) / 128.0).astype(np.float32)
    raise ValueError(f"`{name}` must hold floats or signed/8-bit integer PCM, got dtype {samples.dtype}")


def _channel_axis(shape: tuple[int, int], name: str) -> int:
    axis = 0 if shape[0] <= shape[1] else 1
    if shape[axis] > MAX_CHANNELS:
        raise ValueError(
            f"`{name}` has shape {shape}: a 2-D input is one multi-channel clip with at most {MAX_CHANNELS} "
            "channels; pass a batch as a list of 1-D arrays"
        )
    return axis


def _to_mono(samples: np.ndarray, channel_axis: int | None, name: str) -> np.ndarray:
    """Validate decoded samples and return a mono float32 waveform `(samples,)`."""
    if samples.ndim not in (1, 2):
        raise ValueError(
            f"`{name}` must be 1-D (samples,) or 2-D (channels, samples) / (samples, channels), "
            f"got shape {samples.shape}"
        )
    if samples.size == 0:
        raise ValueError(f"`{name}` is empty (shape {samples.shape}); expected at least one sample")
    waveform = _to_float32(samples, name)
    non_finite = int(np.size(waveform) - np.isfinite(waveform).sum())
    if non_finite:
        raise ValueError(f"`{name}` contains {non_finite} NaN or infinite samples; expected finite values")
    if waveform.ndim == 2:
        axis = _channel_axis(waveform.shape, name) if channel_axis is None else channel_axis
        if waveform.shape[axis] > 1:
            warnings.warn(
                f"`{name}` has {waveform.shape[axis]} channels; they are averaged into one (the encoders read "
                "mono audio)",
                stacklevel=4,
            )
        waveform = waveform.mean(axis=axis)
    return np.ascontiguousarray(waveform)


def load_audio(
    audio,
    sampling_rate: int | None = None,
    target_sampling_rate: int = 16000,
    backend: str = "auto",
    name: str = "audio",
) -> np.ndarray:
    """Load one audio input (see the module docstring) as a mono float32 waveform at `target_sampling_rate`.

    `sampling_rate` is the rate of a bare array or list; when it is None such input is taken to be at
    `target_sampling_rate` already. Files, dicts and decoders carry their own rate. `name` is the argument
    name that error messages quote.
    """
    if sampling_rate is not None:
        _check_sampling_rate(sampling_rate, "sampling_rate")
    samples, source_sampling_rate, channel_axis = _decode(
        audio, sampling_rate, target_sampling_rate, backend, name
    )
    waveform = _to_mono(samples, channel_axis, name)  # (samples,)
    return resample(waveform, source_sampling_rate, target_sampling_rate, backend)


def _is_batch(audio) -> bool:
    """A sequence (list, tuple, a datasets `Column`) is a batch unless it holds numbers: then it is one waveform."""
    if isinstance(audio, (str, bytes)) or not isinstance(audio, Sequence):
        return False
    return not (len(audio) > 0 and isinstance(audio[0], numbers.Number))


def load_audio_batch(
    audio,
    sampling_rate: int | None = None,
    target_sampling_rate: int = 16000,
    backend: str = "auto",
    name: str = "audio",
) -> list[np.ndarray]:
    """Load one input or a list of inputs as a list of mono float32 waveforms at `target_sampling_rate`."""
    is_batch = _is_batch(audio)
    items = list(audio) if is_batch else [audio]
    if not items:
        raise ValueError(f"`{name}` is an empty list; expected at least one audio input")
    names = [f"{name}[{index}]" for index in range(len(items))] if is_batch else [name]
    return [
        load_audio(item, sampling_rate, target_sampling_rate, backend, item_name)
        for item, item_name in zip(items, names, strict=True)
    ]
