"""Speech features for the X-LLM conformer encoder: 80-bin Kaldi fbank with utterance-level normalisation."""

import numpy as np
from transformers import BatchFeature, SequenceFeatureExtractor

from .audio_loading_xllm import load_audio_batch
from .kaldi_fbank_xllm import INT16_SCALE, kaldi_fbank


def utterance_cmvn(features: np.ndarray, epsilon: float = 1e-7) -> np.ndarray:
    """Normalise `(frames, bins)` features to zero mean and unit variance per bin over this utterance."""
    features = features.astype(np.float64)  # float32 sums over long utterances drift by ~1e-4
    mean = features.mean(axis=0)  # (bins,)
    variance = features.var(axis=0)  # (bins,)
    return ((features - mean) / np.sqrt(variance + epsilon)).astype(np.float32)


class XLLMSpeechFeatureExtractor(SequenceFeatureExtractor):
    """Kaldi log-mel filter-bank features for the speech encoder of the X-LLM conformer preset.

    Each utterance is loaded as mono 16 kHz audio (any input `audio_loading_xllm` accepts; other sampling
    rates are resampled), scaled to int16 units as Kaldi expects, turned into `feature_size`-bin fbank
    (25 ms frames every 10 ms, povey window) and normalised to zero mean and unit variance per bin over its
    own frames, before padding, so padding never enters the statistics. The batch is then padded to its
    longest utterance.

    Outputs (a `BatchFeature`; `XLLMProcessor` renames the keys for the speech interface):
        input_features: `(batch, frames, feature_size)` float32, zeros (`padding_value`) after each utterance.
        attention_mask: `(batch, frames)` int32, 1 on real frames and 0 on padding.
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 80,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        window: str = "povey",
        dither: float = 0.0,
        do_normalize: bool = True,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs
        )
        self.frame_length_ms = frame_length_ms
        self.frame_shift_ms = frame_shift_ms
        self.window = window
        self.dither = dither
        self.do_normalize = do_normalize

    def utterance_features(self, waveform: np.ndarray) -> np.ndarray:
        """Features `(frames, feature_size)` of one mono waveform `(samples,)` in [-1, 1] at `sampling_rate`."""
        features = kaldi_fbank(
            waveform * INT16_SCALE,
            self.sampling_rate,
            self.feature_size,
            frame_length_ms=self.frame_length_ms,
            frame_shift_ms=self.frame_shift_ms,
            dither=self.dither,
            window=self.window,
        )
        return utterance_cmvn(features) if self.do_normalize else features

    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        padding: bool | str = "longest",
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Featurise one utterance or a list of them.

        `sampling_rate` is the rate of bare arrays (None: already at `self.sampling_rate`); files, dicts and
        `datasets.Audio` values carry their own. Padding arguments work as in `SequenceFeatureExtractor.pad`,
        counted in frames. Other keyword arguments, which processors pass to every sub-processor, are ignored.
        """
        waveforms = load_audio_batch(raw_speech, sampling_rate, self.sampling_rate, name="raw_speech")
        features = [self.utterance_features(waveform) for waveform in waveforms]
        return self.pad(
            BatchFeature({"input_features": features}),
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=return_attention_mask,
            return_tensors=return_tensors,
        )
