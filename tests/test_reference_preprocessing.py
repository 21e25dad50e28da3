"""Preprocessing options that match X-InstructBLIP's LAVIS processors: headtail frame sampling and a fixed
number of audio windows."""

import numpy as np
import pytest
from conftest import random_video
from transformers.video_utils import VideoMetadata

from xllm.processing import XLLMAudioFeatureExtractor, XLLMVideoProcessor
from xllm.processing.video_processing_xllm import headtail_frame_indices
from xllm.testing import tiny_processor


def test_headtail_takes_first_evenly_spaced_and_last_frames():
    # LAVIS data_utils.py:328: [start] + [start + (end - start) // (n - 1) * i for i in 1..n-2] + [end]
    assert headtail_frame_indices(100, 5).tolist() == [0, 24, 48, 72, 99]
    assert headtail_frame_indices(100, 2).tolist() == [0, 99]  # DisCRn's 2 frames: first and last
    assert headtail_frame_indices(3, 5).tolist() == [0, 0, 0, 0, 2]  # too short: frames repeat


def test_headtail_needs_two_frames():
    with pytest.raises(ValueError, match="`num_frames` must be at least 2, got 1"):
        headtail_frame_indices(10, 1)


def test_video_processor_samples_headtail_frames_when_asked():
    processor = XLLMVideoProcessor(frame_sampling="headtail", num_frames=5)
    metadata = VideoMetadata(total_num_frames=100, fps=25.0)
    assert processor.sample_frames(metadata).tolist() == [0, 24, 48, 72, 99]
    uniform = XLLMVideoProcessor(num_frames=5)
    assert uniform.sample_frames(metadata).tolist() == [10, 30, 50, 70, 90]


def test_headtail_frames_are_the_ones_that_reach_the_model():
    video = random_video(9, seed=3, size=16)
    processor = XLLMVideoProcessor(frame_sampling="headtail", num_frames=3, size={"height": 16, "width": 16})
    pixels = processor([video], return_tensors="pt")["pixel_values_videos"]  # (1, 3, C, 16, 16)
    reference = XLLMVideoProcessor(do_sample_frames=False, size={"height": 16, "width": 16})
    expected = reference([video[[0, 4, 8]]], return_tensors="pt")["pixel_values_videos"]
    assert pixels.shape[1] == 3 and np.allclose(pixels.numpy(), expected.numpy())


def test_unknown_frame_sampling_is_refused():
    with pytest.raises(
        ValueError, match=r"`frame_sampling` must be one of \['uniform', 'headtail'\], got 'random'"
    ):
        XLLMVideoProcessor(frame_sampling="random")


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, int(16000 * seconds)).astype(np.float32)


def test_num_windows_pads_a_short_clip_to_exactly_that_many_real_windows():
    # LAVIS audio_processors.py:115-120: zero-pad the fbank to n_frames * 512 frames, cut into n_frames windows
    extractor = XLLMAudioFeatureExtractor(num_windows=2)
    features = extractor(noise(3.0), return_tensors="np")
    assert features["input_features"].shape == (1, 2, 512, 128)
    assert features["window_mask"].tolist() == [[1, 1]]  # both windows go through the encoder, padding too
    fbank = extractor.clip_features(noise(3.0))  # (298, 128)
    flat = features["input_features"][0].reshape(1024, 128)
    assert np.allclose(flat[: len(fbank)], fbank) and (flat[len(fbank) :] == 0).all()


def test_num_windows_truncates_a_long_clip_with_a_warning():
    extractor = XLLMAudioFeatureExtractor(num_windows=2)
    with pytest.warns(UserWarning, match="keeping the first 1024"):
        features = extractor(noise(12.0), return_tensors="np")
    fbank = extractor.clip_features(noise(12.0))
    assert np.allclose(features["input_features"][0].reshape(1024, 128), fbank[:1024])


def test_num_windows_and_max_windows_do_not_combine():
    with pytest.raises(ValueError, match="Give `max_windows` \\(3\\) or `num_windows` \\(2\\), not both"):
        XLLMAudioFeatureExtractor(num_windows=2, max_windows=3)
    with pytest.raises(ValueError, match="`num_windows` must be None or a positive int, got 0"):
        XLLMAudioFeatureExtractor(num_windows=0)
    with pytest.raises(ValueError, match="`max_windows` \\(1\\) cannot be applied"):
        XLLMAudioFeatureExtractor(num_windows=2)(noise(1.0), max_windows=1)


def test_a_one_second_sound_takes_two_windows_of_queries_with_num_windows():
    processor = tiny_processor(modalities=("image", "video", "audio"))
    processor.audio_feature_extractor = XLLMAudioFeatureExtractor(num_windows=2)
    batch = processor(text="<audio> what is it ?", audio=[noise(1.0)])
    audio_id = processor.placeholder_ids["audio"]
    assert int((batch["input_ids"] == audio_id).sum()) == 2 * processor.num_query_tokens["audio"]
    assert batch["audio_window_mask"].tolist() == [[1, 1]]


def test_num_windows_is_saved(tmp_path):
    XLLMAudioFeatureExtractor(num_windows=2).save_pretrained(tmp_path)
    assert XLLMAudioFeatureExtractor.from_pretrained(tmp_path).num_windows == 2
