"""Audio (non-speech) features for BEATs, the encoder of X-InstructBLIP's audio Q-Former.

BEATs' published preprocessing (microsoft/unilm, `beats/BEATs.py`, `BEATs.preprocess`; the same constants in
salesforce/LAVIS, `lavis/processors/audio_processors.py`, `BeatsAudioProcessor`): the 16 kHz waveform times
2**15, torchaudio's Kaldi fbank with 128 bins, 25 ms frames, 10 ms shift and default options (povey window, no
dither), then `(fbank - 15.41663) / (2 * 6.55582)`. X-InstructBLIP then cuts the features into windows of
512 frames (5.12 s) and sends each window through the Q-Former. Its audio processor gives every clip exactly
`n_frames` = 2 windows (10.24 s), the fbank zero-padded or truncated (`BeatsAudioProcessor.__call__` at
`audio_processors.py:115-120`, `n_frames=2` at `:138`; the eval configs leave `is_eval` False, so evaluation
takes this path too): `num_windows=2` here.
"""

import math
import numbers
import warnings

import numpy as np
from transformers import BatchFeature, SequenceFeatureExtractor

from .audio_loading_xllm import load_audio_batch
from .kaldi_fbank_xllm import INT16_SCALE, kaldi_fbank, kaldi_frame_count

BEATS_FBANK_MEAN = 15.41663
BEATS_FBANK_STD = 6.55582


class XLLMAudioFeatureExtractor(SequenceFeatureExtractor):
    """BEATs log-mel features cut into fixed-length windows, for the audio interface.

    Every clip is loaded as mono 16 kHz audio (any input `audio_loading_xllm` accepts), turned into
    normalised 128-bin fbank as BEATs does, zero-padded to a whole number of windows of `window_seconds`
    and cut into those windows. With `max_windows=None` (inference) every window is kept; a number (training)
    gives every clip exactly that many windows: shorter clips get empty windows, longer clips are truncated
    with a warning. The batch is padded to the clip with the most windows. With `num_windows` (X-InstructBLIP:
    2) every clip is instead zero-padded or truncated to exactly that many windows, all of them real (the encoder
    reads the padding, as LAVIS's does); it cannot be combined with `max_windows`.

    Outputs (a `BatchFeature`; `XLLMProcessor` renames the keys for the audio interface):
        input_features: `(batch, windows, frames_per_window, feature_size)` float32; padding is
            `padding_value` (0, the normalised mean), inside the last window of a clip and in empty windows.
        window_mask: `(batch, windows)` int32, 1 on windows that hold audio and 0 on empty ones.
    """

    model_input_names = ["input_features", "window_mask"]

    def __init__(
        self,
        feature_size: int = 128,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        window_seconds: float = 5.12,
        max_windows: int | None = None,
        num_windows: int | None = None,
        fbank_mean: float = BEATS_FBANK_MEAN,
        fbank_std: float = BEATS_FBANK_STD,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs
        )
        self.frame_length_ms = frame_length_ms
        self.frame_shift_ms = frame_shift_ms
        self.window_seconds = window_seconds
        self.max_windows = _checked_max_windows(max_windows)
        self.num_windows = _checked_max_windows(num_windows, "num_windows")
        if self.max_windows is not None and self.num_windows is not None:
            raise ValueError(
                f"Give `max_windows` ({max_windows}) or `num_windows` ({num_windows}), not both: `num_windows` fixes "
                "the window count, `max_windows` caps it and masks the empty windows."
            )
        self.fbank_mean = fbank_mean
        self.fbank_std = fbank_std

    @property
    def frames_per_window(self) -> int:
        """Fbank frames in one window: 512 for 5.12 s at a 10 ms shift."""
        return round(self.window_seconds * 1000 / self.frame_shift_ms)

    def windows_of(self, num_samples: int, max_windows: int | None = None) -> int:
        """Real windows a clip of `num_samples` samples (at `sampling_rate`) gets, without featurising it; what
        `window_mask` sums to for that clip (vLLM's token-count helper reads it)."""
        if self.num_windows is not None:
            return self.num_windows
        frames = kaldi_frame_count(num_samples, self.sampling_rate, self.frame_length_ms, self.frame_shift_ms)
        windows = math.ceil(frames / self.frames_per_window)
        max_windows = self.max_windows if max_windows is None else max_windows
        return windows if max_windows is None else min(windows, max_windows)

    def clip_features(self, waveform: np.ndarray) -> np.ndarray:
        """BEATs-normalised fbank `(frames, feature_size)` of one mono waveform in [-1, 1] at `sampling_rate`."""
        fbank = kaldi_fbank(
            waveform * INT16_SCALE,
            self.sampling_rate,
            self.feature_size,
            frame_length_ms=self.frame_length_ms,
            frame_shift_ms=self.frame_shift_ms,
        )
        return (fbank - self.fbank_mean) / (2 * self.fbank_std)

    def split_into_windows(self, features: np.ndarray) -> np.ndarray:
        """`(frames, bins)` -> `(ceil(frames / frames_per_window), frames_per_window, bins)`, last one padded."""
        num_windows = math.ceil(features.shape[0] / self.frames_per_window)
        padded = np.full(
            (num_windows * self.frames_per_window, features.shape[1]), self.padding_value, dtype=np.float32
        )
        padded[: features.shape[0]] = features
        return padded.reshape(num_windows, self.frames_per_window, features.shape[1])

    def fixed_windows(self, features: np.ndarray, index: int) -> np.ndarray:
        """`(frames, bins)` -> `(num_windows, frames_per_window, bins)`: zero-padded or truncated (with a
        warning) to `num_windows` whole windows, as LAVIS's `BeatsAudioProcessor` does (`audio_processors.py:116-120`)."""
        frames = self.num_windows * self.frames_per_window
        if features.shape[0] > frames:
            warnings.warn(
                f"`raw_audio[{index}]` spans {features.shape[0]} fbank frames; keeping the first {frames} "
                f"(num_windows={self.num_windows})",
                stacklevel=3,
            )
        padded = np.full((frames, features.shape[1]), self.padding_value, dtype=np.float32)
        kept = features[:frames]
        padded[: kept.shape[0]] = kept
        return padded.reshape(self.num_windows, self.frames_per_window, features.shape[1])

    def __call__(
        self,
        raw_audio,
        sampling_rate: int | None = None,
        max_windows: int | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Featurise one clip or a list of them.

        `sampling_rate` is the rate of bare arrays (None: already at `self.sampling_rate`); files, dicts and
        `datasets.Audio` values carry their own. `max_windows` overrides `self.max_windows` for this call.
        Other keyword arguments, which processors pass to every sub-processor, are ignored.
        """
        max_windows = self.max_windows if max_windows is None else _checked_max_windows(max_windows)
        waveforms = load_audio_batch(raw_audio, sampling_rate, self.sampling_rate, name="raw_audio")
        if self.num_windows is not None:
            if max_windows is not None:
                raise ValueError(
                    f"This extractor gives every clip `num_windows`={self.num_windows} windows; `max_windows` "
                    f"({max_windows}) cannot be applied to it."
                )
            clips = [self.fixed_windows(self.clip_features(w), index) for index, w in enumerate(waveforms)]
            return self._stack(clips, self.num_windows, return_tensors)
        clips = [self.split_into_windows(self.clip_features(waveform)) for waveform in waveforms]
        if max_windows is not None:
            clips = [_truncate_windows(clip, max_windows, index) for index, clip in enumerate(clips)]
        num_windows = max_windows if max_windows is not None else max(clip.shape[0] for clip in clips)
        return self._stack(clips, num_windows, return_tensors)

    def _stack(self, clips: list[np.ndarray], num_windows: int, return_tensors: str | None) -> BatchFeature:
        """Pad every clip to `num_windows` windows and stack them with a mask of the real windows."""
        input_features = np.full(
            (len(clips), num_windows, self.frames_per_window, self.feature_size),
            self.padding_value,
            dtype=np.float32,
        )  # (batch, windows, frames_per_window, bins)
        window_mask = np.zeros((len(clips), num_windows), dtype=np.int32)  # (batch, windows)
        for index, clip in enumerate(clips):
            input_features[index, : clip.shape[0]] = clip
            window_mask[index, : clip.shape[0]] = 1
        return BatchFeature(
            {"input_features": input_features, "window_mask": window_mask}, tensor_type=return_tensors
        )


def _checked_max_windows(max_windows: int | None, name: str = "max_windows") -> int | None:
    is_count = isinstance(max_windows, numbers.Integral) and not isinstance(max_windows, bool)
    if max_windows is not None and (not is_count or max_windows < 1):
        raise ValueError(f"`{name}` must be None or a positive int, got {max_windows!r}")
    return max_windows


def _truncate_windows(clip: np.ndarray, max_windows: int, index: int) -> np.ndarray:
    """Keep the first `max_windows` windows of a clip `(windows, frames, bins)`, warning when some are cut."""
    if clip.shape[0] > max_windows:
        warnings.warn(
            f"`raw_audio[{index}]` spans {clip.shape[0]} windows; keeping the first {max_windows} (max_windows)",
            stacklevel=3,
        )
    return clip[:max_windows]
