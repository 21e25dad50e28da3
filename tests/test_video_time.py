"""Video time (`XLLMInterfaceConfig.frame_positions`, beyond the papers): each frame's queries know
their frame's time and read every frame of their video, so the interface can see motion. Without
it (the published systems) frames are read one by one: reversing a video only reverses its blocks."""

import pytest
import torch

from xllm import XLLMForConditionalGeneration, XLLMInterfaceConfig
from xllm.testing import tiny_config
from xllm.trainers import init_video_from_image

FRAMES = 4


def video_model(frame_positions: int) -> XLLMForConditionalGeneration:
    torch.manual_seed(0)
    config = tiny_config(
        speech_model_type=None, audio_model_type=None, point_clouds=False, num_video_frames=FRAMES
    )
    config.video_interface_config.frame_positions = frame_positions
    return XLLMForConditionalGeneration(config).eval()


def video_tokens(model, videos: torch.Tensor) -> torch.Tensor:
    """(videos, frames, ...) -> (videos, frames, queries, llm_width)."""
    instruction = torch.ones(videos.shape[0], 3, dtype=torch.long)
    with torch.no_grad():
        tokens = model.get_video_features(videos, qformer_input_ids=instruction).pooler_output
    return tokens.view(videos.shape[0], videos.shape[1], -1, tokens.shape[-1])


@pytest.fixture(scope="module")
def videos() -> torch.Tensor:
    return torch.randn(2, FRAMES, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_without_video_time_a_reversed_video_gives_the_same_frame_blocks_reversed(videos):
    model = video_model(0)
    forward, backward = video_tokens(model, videos), video_tokens(model, videos.flip(1))
    torch.testing.assert_close(backward, forward.flip(1), rtol=1e-5, atol=1e-5)


def test_with_video_time_the_outputs_depend_on_frame_order(videos):
    model = video_model(FRAMES)
    forward, backward = video_tokens(model, videos), video_tokens(model, videos.flip(1))
    assert (backward - forward.flip(1)).abs().max() > 1e-3


@pytest.mark.parametrize("frame_positions", [0, FRAMES])
def test_with_video_time_each_frame_reads_its_whole_video_and_no_other(videos, frame_positions):
    model = video_model(frame_positions)
    changed = videos.clone()
    changed[:, -1] = torch.randn_like(changed[:, -1])  # only the last frame differs
    before, after = video_tokens(model, videos), video_tokens(model, changed)
    first_frame_change = (after[:, 0] - before[:, 0]).abs().max()
    if frame_positions:
        assert first_frame_change > 1e-5  # the first frame's tokens see the last frame
    else:
        assert first_frame_change < 1e-6  # read alone
    mixed = torch.cat([videos[:1], changed[1:]])  # the second video changed: the first's tokens do not
    torch.testing.assert_close(video_tokens(model, mixed)[0], before[0], rtol=1e-5, atol=1e-6)


def test_video_time_survives_save_and_load(videos, tmp_path):
    model = video_model(FRAMES)
    model.save_pretrained(tmp_path)
    loaded = XLLMForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.video_interface_config.frame_positions == FRAMES
    torch.testing.assert_close(
        video_tokens(loaded, videos), video_tokens(model, videos), rtol=1e-5, atol=1e-5
    )


def test_more_frames_than_positions_is_refused_with_the_counts(videos):
    model = video_model(FRAMES - 1)
    with pytest.raises(
        ValueError, match=f"knows {FRAMES - 1} frame positions .* got {FRAMES} frames per item"
    ):
        video_tokens(model, videos)


def test_video_time_is_a_q_former_option():
    with pytest.raises(ValueError, match="`frame_positions`.*got 4 for kind 'linear'"):
        XLLMInterfaceConfig(kind="linear", frame_positions=4)


def test_the_video_interface_with_time_starts_from_the_image_interface():
    model = video_model(FRAMES)
    time_embeddings = model.model.interfaces["video"].frame_query_embeddings.weight.clone()
    init_video_from_image(model)
    image, video = model.model.interfaces["image"], model.model.interfaces["video"]
    torch.testing.assert_close(video.query_tokens, image.query_tokens)
    torch.testing.assert_close(video.frame_query_embeddings.weight, time_embeddings)
