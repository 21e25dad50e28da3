"""Kaldi-compatible log-mel filter-bank features, with or without torchaudio.

torchaudio's `compliance.kaldi.fbank` is the reference. When torchaudio does not import (it is optional), the
same features come from `transformers.audio_utils`, configured the way Kaldi computes them: frames without
centring (Kaldi's snip-edges), DC offset removed per frame, pre-emphasis 0.97, a symmetric window, an FFT
rounded up to a power of two, a power spectrum, triangular filters in Kaldi's mel space from 20 Hz to
Nyquist, and the log of the energies clamped at float32 epsilon. Select the implementation with `backend`
("auto", "torch", "numpy") or the `XLLM_AUDIO_BACKEND` environment variable.
"""

import functools
import warnings

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from .audio_loading_xllm import select_backend

KALDI_WINDOWS = {"povey": "povey", "hanning": "hann", "hamming": "hamming", "rectangular": "boxcar"}
KALDI_LOW_FREQUENCY_HZ = 20.0
KALDI_PREEMPHASIS = 0.97
KALDI_LOG_FLOOR = float(np.finfo(np.float32).eps)
INT16_SCALE = 32768.0  # Kaldi-trained models see waveforms in int16 units, not [-1, 1]


def _samples_per_ms(sampling_rate: int, milliseconds: float) -> int:
    """Frame sizes in samples, truncated exactly as Kaldi and torchaudio do."""
    return int(sampling_rate * milliseconds * 0.001)


def kaldi_frame_count(
    num_samples: int, sampling_rate: int, frame_length_ms: float, frame_shift_ms: float
) -> int:
    """Frames `kaldi_fbank` gives for `num_samples` samples (snip-edges), without computing them; 0 below one frame."""
    frame_length = _samples_per_ms(sampling_rate, frame_length_ms)
    frame_shift = _samples_per_ms(sampling_rate, frame_shift_ms)
    return 0 if num_samples < frame_length else 1 + (num_samples - frame_length) // frame_shift


def kaldi_fbank(
    waveform: np.ndarray,
    sampling_rate: int,
    num_mel_bins: int,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    dither: float = 0.0,
    window: str = "povey",
    backend: str = "auto",
) -> np.ndarray:
    """Log-mel filter-bank features `(frames, num_mel_bins)` float32 of a mono waveform `(samples,)`.

    The waveform is used at the scale given (Kaldi models usually expect int16 units: multiply a [-1, 1]
    waveform by `INT16_SCALE`). Frames follow Kaldi's snip-edges rule: 1 + (samples - frame) // shift.
    """
    if not isinstance(waveform, np.ndarray) or waveform.ndim != 1:
        raise ValueError(
            f"`waveform` must be a 1-D numpy array (samples,), got {type(waveform).__name__} "
            f"of shape {getattr(waveform, 'shape', None)}"
        )
    if window not in KALDI_WINDOWS:
        raise ValueError(f"`window` must be one of {sorted(KALDI_WINDOWS)}, got {window!r}")
    frame_length = _samples_per_ms(sampling_rate, frame_length_ms)
    frame_shift = _samples_per_ms(sampling_rate, frame_shift_ms)
    if waveform.shape[0] < frame_length:
        raise ValueError(
            f"`waveform` has {waveform.shape[0]} samples, fewer than one {frame_length_ms} ms frame "
            f"({frame_length} samples at {sampling_rate} Hz)"
        )
    if select_backend(backend, "torchaudio") == "torch":
        import torchaudio.compliance.kaldi

        features = torchaudio.compliance.kaldi.fbank(
            torch.from_numpy(waveform.astype(np.float32)).unsqueeze(0),
            sample_frequency=float(sampling_rate),
            num_mel_bins=num_mel_bins,
            frame_length=frame_length_ms,
            frame_shift=frame_shift_ms,
            dither=dither,
            window_type=window,
        )
        return features.numpy()
    return _fbank_with_audio_utils(
        waveform, sampling_rate, num_mel_bins, frame_length, frame_shift, dither, window
    )


@functools.cache
def _kaldi_mel_filters(num_mel_bins: int, fft_length: int, sampling_rate: int) -> np.ndarray:
    """Kaldi's triangular mel filters `(fft_length // 2 + 1, num_mel_bins)`.

    With 128 bins on a 512-point FFT at 16 kHz one narrow low filter (index 3) falls between two FFT bins and
    is all zero; Kaldi keeps it too (its log energy is the floor), so transformers' warning about it is
    silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        return mel_filter_bank(
            num_frequency_bins=fft_length // 2 + 1,
            num_mel_filters=num_mel_bins,
            min_frequency=KALDI_LOW_FREQUENCY_HZ,
            max_frequency=sampling_rate / 2,
            sampling_rate=sampling_rate,
            mel_scale="kaldi",
            triangularize_in_mel_space=True,
        )


def _fbank_with_audio_utils(
    waveform: np.ndarray,
    sampling_rate: int,
    num_mel_bins: int,
    frame_length: int,
    frame_shift: int,
    dither: float,
    window: str,
) -> np.ndarray:
    """The torchaudio-free path: `transformers.audio_utils.spectrogram` set up as Kaldi computes fbank."""
    fft_length = 1 << (frame_length - 1).bit_length()  # Kaldi rounds the FFT size up to a power of two
    log_mel = spectrogram(
        waveform.astype(np.float64),
        window_function(frame_length, KALDI_WINDOWS[window], periodic=False),
        frame_length=frame_length,
        hop_length=frame_shift,
        fft_length=fft_length,
        power=2.0,
        center=False,
        dither=dither,
        preemphasis=KALDI_PREEMPHASIS,
        mel_filters=_kaldi_mel_filters(num_mel_bins, fft_length, sampling_rate),
        mel_floor=KALDI_LOG_FLOOR,
        log_mel="log",
        remove_dc_offset=True,
    )  # (num_mel_bins, frames)
    return np.ascontiguousarray(log_mel.T)
