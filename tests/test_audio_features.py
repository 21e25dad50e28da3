"""Audio loading, Kaldi fbank (torchaudio and fallback), and the speech and audio feature extractors."""

import json
import math

import datasets
import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi
import torchaudio.functional
from scipy.io import wavfile

from xllm.processing import audio_loading_xllm
from xllm.processing.audio_loading_xllm import BACKEND_ENV_VAR, load_audio, load_audio_batch, resample
from xllm.processing.feature_extraction_audio_xllm import XLLMAudioFeatureExtractor
from xllm.processing.feature_extraction_speech_xllm import XLLMSpeechFeatureExtractor
from xllm.processing.kaldi_fbank_xllm import INT16_SCALE, kaldi_fbank


def sine(frequency: float, seconds: float, sampling_rate: int, amplitude: float = 0.5) -> np.ndarray:
    time = np.arange(round(seconds * sampling_rate)) / sampling_rate
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def noisy_sine(seconds: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(round(seconds * 16000)).astype(np.float32)
    return sine(440.0, seconds, 16000, amplitude=0.3) + 0.05 * noise


def peak_frequency(waveform: np.ndarray, sampling_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform))
    return float(np.argmax(spectrum) * sampling_rate / len(waveform))


def write_wav(path, samples: np.ndarray, sampling_rate: int) -> str:
    wavfile.write(path, sampling_rate, samples)
    return str(path)


def refuse(*args, **kwargs):
    raise AssertionError("the torch backend ran although the numpy fallback was selected")


# Kaldi fbank


@pytest.mark.parametrize("num_mel_bins", [80, 128])
def test_fallback_fbank_matches_torchaudio_within_1e_3(num_mel_bins):
    waveform = noisy_sine(1.0) * INT16_SCALE
    reference = kaldi_fbank(waveform, 16000, num_mel_bins, backend="torch")
    fallback = kaldi_fbank(waveform, 16000, num_mel_bins, backend="numpy")
    assert reference.shape == fallback.shape == (98, num_mel_bins)
    np.testing.assert_allclose(fallback, reference, atol=1e-3, rtol=0)


def test_fbank_rejects_a_waveform_shorter_than_one_frame():
    with pytest.raises(ValueError, match="fewer than one 25.0 ms frame"):
        kaldi_fbank(np.zeros(399), 16000, 80)


def test_fbank_rejects_an_unknown_window():
    with pytest.raises(ValueError, match="`window` must be one of"):
        kaldi_fbank(np.zeros(800), 16000, 80, window="blackmanharris")


# Resampling


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("sampling_rate", [8000, 44100])
def test_resampling_to_16k_keeps_duration_and_sine_frequency(sampling_rate, backend):
    waveform = sine(440.0, 1.0, sampling_rate)
    resampled = resample(waveform, sampling_rate, 16000, backend=backend)
    assert resampled.dtype == np.float32
    assert resampled.shape == (16000,)
    assert peak_frequency(resampled, 16000) == pytest.approx(440.0, abs=1.0)


@pytest.mark.parametrize("sampling_rate", [8000, 44100])
def test_torchaudio_and_scipy_resampling_agree(sampling_rate):
    waveform = sine(440.0, 0.5, sampling_rate)
    with_torchaudio = resample(waveform, sampling_rate, 16000, backend="torch")
    with_scipy = resample(waveform, sampling_rate, 16000, backend="numpy")
    np.testing.assert_allclose(with_scipy, with_torchaudio, atol=5e-3, rtol=0)


def test_environment_variable_forces_the_fallback_through_the_whole_speech_pipeline(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV_VAR, "numpy")
    monkeypatch.setattr(torchaudio.functional, "resample", refuse)
    monkeypatch.setattr(torchaudio.compliance.kaldi, "fbank", refuse)
    features = XLLMSpeechFeatureExtractor()(sine(440.0, 0.5, 8000), sampling_rate=8000)
    assert np.asarray(features["input_features"]).shape == (1, 48, 80)


def test_auto_backend_falls_back_when_torchaudio_does_not_import(monkeypatch):
    monkeypatch.setattr(audio_loading_xllm, "_importable", lambda module: module != "torchaudio")
    monkeypatch.setattr(torchaudio.functional, "resample", refuse)
    resampled = resample(sine(440.0, 0.25, 8000), 8000, 16000)
    assert resampled.shape == (4000,)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="`backend`"):
        resample(sine(440.0, 0.1, 8000), 8000, 16000, backend="librosa")


# Loading: arrays, channels, integer PCM


def test_stereo_is_down_mixed_whichever_axis_holds_the_channels():
    left, right = sine(440.0, 0.1, 16000), sine(880.0, 0.1, 16000, amplitude=0.2)
    expected = (left + right) / 2
    np.testing.assert_allclose(load_audio(np.stack([left, right])), expected, atol=1e-7)
    np.testing.assert_allclose(load_audio(np.stack([left, right], axis=1)), expected, atol=1e-7)
    np.testing.assert_allclose(load_audio(torch.from_numpy(np.stack([left, right]))), expected, atol=1e-7)


def test_int16_pcm_is_scaled_to_unit_range():
    pcm = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    np.testing.assert_allclose(load_audio(pcm), [-1.0, -0.5, 0.0, 0.5, 32767 / 32768], atol=1e-7)


def test_array_at_another_rate_is_resampled_and_list_of_floats_is_one_waveform():
    assert load_audio(sine(440.0, 0.5, 8000), sampling_rate=8000).shape == (8000,)
    assert len(load_audio_batch([0.0, 0.1, 0.2, 0.1])) == 1
    assert len(load_audio_batch([np.zeros(400), np.zeros(800)])) == 2


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros(0, dtype=np.float32), "is empty"),
        (np.array([0.0, np.nan, 0.1], dtype=np.float32), "1 NaN or infinite samples"),
        (np.array([0.0, np.inf], dtype=np.float32), "1 NaN or infinite samples"),
        (np.zeros((2, 3, 400), dtype=np.float32), "must be 1-D"),
        (np.zeros(400, dtype=np.complex64), "dtype complex64"),
        (np.zeros((16, 1600), dtype=np.float32), "at most 8"),
        ("not-a-file.wav", "names no file"),
    ],
)
def test_bad_audio_raises_an_error_naming_the_argument_and_the_problem(audio, message):
    error = FileNotFoundError if isinstance(audio, str) else ValueError
    with pytest.raises(error, match=message) as raised:
        load_audio_batch([np.zeros(400, dtype=np.float32), audio], name="raw_speech")
    assert "`raw_speech[1]`" in str(raised.value)


def test_empty_batch_and_nan_speech_raise_from_the_extractor():
    extractor = XLLMSpeechFeatureExtractor()
    with pytest.raises(ValueError, match="`raw_speech` is an empty list"):
        extractor([])
    with pytest.raises(ValueError, match="`raw_speech` contains 400 NaN"):
        extractor(np.full(400, np.nan, dtype=np.float32))


# Loading: files, dicts, datasets.Audio


@pytest.fixture
def stereo_wav(tmp_path):
    """A 0.25 s int16 stereo WAV at 44.1 kHz and the mono waveform it holds, in [-1, 1]."""
    left = np.round(sine(440.0, 0.25, 44100) * 20000).astype(np.int16)
    right = np.round(sine(660.0, 0.25, 44100) * 10000).astype(np.int16)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 44100)
    return path, (left / 32768.0 + right / 32768.0) / 2


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_wav_file_decodes_to_the_down_mixed_waveform_with_either_backend(stereo_wav, backend):
    path, expected = stereo_wav
    np.testing.assert_allclose(
        load_audio(path, target_sampling_rate=44100, backend=backend), expected, atol=1e-6
    )


def test_path_and_bytes_and_array_dicts_load_the_same_audio(stereo_wav):
    path, expected = stereo_wav
    with open(path, "rb") as file:
        encoded = file.read()
    inputs = [
        {"path": path},
        {"bytes": encoded, "path": "elsewhere.wav"},
        {"path": path, "bytes": None},
        {"array": expected, "sampling_rate": 44100},
    ]
    for waveform in load_audio_batch(inputs, target_sampling_rate=44100):
        np.testing.assert_allclose(waveform, expected, atol=1e-6)


def test_dict_without_audio_keys_is_rejected():
    with pytest.raises(ValueError, match="'array' and 'sampling_rate', 'bytes' or 'path'"):
        load_audio({"text": "hello"})
    with pytest.raises(ValueError, match="no 'sampling_rate'"):
        load_audio({"array": np.zeros(400)})


def test_datasets_audio_column_feeds_the_extractor(stereo_wav):
    path, expected = stereo_wav
    dataset = datasets.Dataset.from_dict({"audio": [path, path]}).cast_column("audio", datasets.Audio())
    decoded = dataset[0]["audio"]
    assert hasattr(decoded, "get_all_samples")
    np.testing.assert_allclose(load_audio(decoded, target_sampling_rate=44100), expected, atol=1e-6)
    extractor = XLLMSpeechFeatureExtractor()
    from_column = extractor(dataset["audio"], return_tensors="np")
    from_array = extractor({"array": expected, "sampling_rate": 44100}, return_tensors="np")
    assert from_column["input_features"].shape == (2, 23, 80)
    np.testing.assert_allclose(from_column["input_features"][1], from_array["input_features"][0], atol=1e-4)


def test_undecoded_datasets_audio_column_loads_from_its_path(stereo_wav):
    path, expected = stereo_wav
    dataset = datasets.Dataset.from_dict({"audio": [path]}).cast_column("audio", datasets.Audio(decode=False))
    np.testing.assert_allclose(
        load_audio(dataset[0]["audio"], target_sampling_rate=44100), expected, atol=1e-6
    )


# Speech feature extractor


def test_speech_features_are_normalised_per_utterance_over_true_frames_only():
    extractor = XLLMSpeechFeatureExtractor()
    long_clip, short_clip = noisy_sine(1.0, seed=1), noisy_sine(0.5, seed=2)
    batch = extractor([long_clip, short_clip], return_tensors="pt")
    assert batch["input_features"].shape == (2, 98, 80)
    assert batch["attention_mask"].sum(dim=1).tolist() == [98, 48]
    short_features = batch["input_features"][1, :48].double()
    torch.testing.assert_close(
        short_features.mean(dim=0), torch.zeros(80, dtype=torch.double), atol=1e-5, rtol=0
    )
    # the 1e-7 variance floor lowers the std of the flattest bins (variance ~1e-3) by up to ~1e-4
    torch.testing.assert_close(
        short_features.std(dim=0, unbiased=False), torch.ones(80, dtype=torch.double), atol=1e-3, rtol=0
    )
    assert batch["input_features"][1, 48:].abs().max() == 0
    alone = extractor(short_clip, return_tensors="pt")["input_features"][0]
    torch.testing.assert_close(batch["input_features"][1, :48], alone, atol=1e-5, rtol=0)


def test_speech_extractor_resamples_8k_input_to_16k_frames():
    extractor = XLLMSpeechFeatureExtractor()
    features = extractor(sine(440.0, 1.0, 8000), sampling_rate=8000, return_tensors="np")
    assert features["input_features"].shape == (1, 98, 80)


# Audio (BEATs) feature extractor


def test_audio_features_follow_beats_preprocessing():
    waveform = noisy_sine(1.0)
    features = XLLMAudioFeatureExtractor()(waveform, return_tensors="pt")["input_features"]
    beats_fbank = torchaudio.compliance.kaldi.fbank(
        torch.from_numpy(waveform).unsqueeze(0) * 2**15,
        num_mel_bins=128,
        sample_frequency=16000,
        frame_length=25,
        frame_shift=10,
    )
    beats_features = (beats_fbank - 15.41663) / (2 * 6.55582)
    torch.testing.assert_close(features[0, 0, :98], beats_features, atol=1e-5, rtol=0)
    assert features[0, 0, 98:].abs().max() == 0


def test_twelve_seconds_of_audio_make_three_windows_of_512_frames():
    features = XLLMAudioFeatureExtractor()([noisy_sine(12.0), noisy_sine(1.0)], return_tensors="pt")
    assert features["input_features"].shape == (2, 3, 512, 128)
    assert features["window_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    frames = 1 + (12 * 16000 - 400) // 160
    assert frames == 1198 and math.ceil(frames / 512) == 3
    assert features["input_features"][0, 2, frames - 1024 :].abs().max() == 0
    assert features["input_features"][0, 2, frames - 1024 - 1].abs().max() > 0


def test_max_windows_pads_short_clips_and_truncates_long_ones_with_a_warning():
    extractor = XLLMAudioFeatureExtractor(max_windows=5)
    padded = extractor(noisy_sine(12.0), return_tensors="np")
    assert padded["input_features"].shape == (1, 5, 512, 128)
    assert padded["window_mask"].tolist() == [[1, 1, 1, 0, 0]]
    with pytest.warns(UserWarning, match="spans 3 windows; keeping the first 2"):
        truncated = extractor(noisy_sine(12.0), max_windows=2, return_tensors="np")
    assert truncated["window_mask"].tolist() == [[1, 1]]
    np.testing.assert_array_equal(truncated["input_features"][0], padded["input_features"][0, :2])


def test_invalid_max_windows_is_rejected():
    with pytest.raises(ValueError, match="`max_windows` must be None or a positive int, got 0"):
        XLLMAudioFeatureExtractor(max_windows=0)


# Saving and loading


@pytest.mark.parametrize(
    "extractor",
    [XLLMSpeechFeatureExtractor(dither=0.0, do_normalize=True), XLLMAudioFeatureExtractor(max_windows=2)],
    ids=["speech", "audio"],
)
def test_feature_extractors_round_trip_through_save_pretrained(extractor, tmp_path):
    extractor.save_pretrained(tmp_path)
    with open(tmp_path / "preprocessor_config.json") as file:
        saved = json.load(file)
    assert saved["feature_extractor_type"] == type(extractor).__name__
    reloaded = type(extractor).from_pretrained(tmp_path)
    assert reloaded.to_dict() == extractor.to_dict()
    waveform = noisy_sine(0.5)
    for key, value in extractor(waveform, return_tensors="np").items():
        np.testing.assert_array_equal(reloaded(waveform, return_tensors="np")[key], value)
