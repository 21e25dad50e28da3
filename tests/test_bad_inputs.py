"""Bad inputs: each one ends in a ValueError/TypeError that names the argument, what was expected and
what came, or in a documented repair (with a warning where information is lost)."""

import json
import shutil

import numpy as np
import pytest
import torch
import torchaudio
from conftest import random_image, random_video
from PIL import Image
from transformers import AutoModelForImageTextToText

from xllm.modeling_xllm import XLLMConfig
from xllm.testing import (
    tiny_interface_config,
    tiny_model_and_processor,
    tiny_text_config,
    tiny_tokenizer,
    tiny_vision_config,
)
from xllm.testing import tiny_processor as build_tiny_processor

ALL_MODALITIES = ("image", "video", "speech", "audio", "point_cloud")
SAMPLING_RATE = 16000


@pytest.fixture(scope="module")
def processor():
    """A processor for every modality; `audio=` goes to the audio interface."""
    return build_tiny_processor(modalities=ALL_MODALITIES)


@pytest.fixture(scope="module")
def image_model_dir(tmp_path_factory):
    """A saved tiny image/video model, to be copied and damaged by the checkpoint tests."""
    model, _ = tiny_model_and_processor(speech_model_type=None, audio_model_type=None, point_clouds=False)
    directory = tmp_path_factory.mktemp("image_model")
    model.save_pretrained(directory)
    return directory


def sine(seconds: float, sampling_rate: int = SAMPLING_RATE, frequency: float = 440.0) -> np.ndarray:
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return (0.5 * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def cloud(points: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(points, 3))


# Placeholder count vs media count, for every modality.


def test_more_image_placeholders_than_images_names_both_counts(processor):
    with pytest.raises(
        ValueError, match=r"2 <image> placeholder\(s\) but 1 image input\(s\) were given in `images`"
    ):
        processor(images=[random_image(0)], text="<image> <image> what")


def test_more_videos_than_video_placeholders_names_both_counts(processor):
    videos = [random_video(4, seed=0), random_video(4, seed=1)]
    with pytest.raises(
        ValueError, match=r"1 <video> placeholder\(s\) but 2 video input\(s\) were given in `videos`"
    ):
        processor(videos=videos, text="<video> what")


def test_speech_placeholder_without_speech_names_both_counts(processor):
    with pytest.raises(
        ValueError, match=r"1 <speech> placeholder\(s\) but 0 speech input\(s\) were given in `speech`"
    ):
        processor(text="<speech> what")


def test_audio_count_mismatch_names_both_counts(processor):
    with pytest.raises(
        ValueError, match=r"1 <audio> placeholder\(s\) but 2 audio input\(s\) were given in `audio`"
    ):
        processor(audio=[sine(0.5), sine(0.5)], text="<audio> what")


def test_point_cloud_count_mismatch_names_both_counts(processor):
    with pytest.raises(
        ValueError,
        match=r"2 <point_cloud> placeholder\(s\) but 1 point_cloud input\(s\) were given in `point_clouds`",
    ):
        processor(point_clouds=[cloud(80)], text="<point_cloud> <point_cloud> what")


def test_image_without_a_placeholder_is_refused(processor):
    with pytest.raises(ValueError, match=r"0 <image> placeholder\(s\) but 1 image input"):
        processor(images=[random_image(0)], text="what colour is it ?")


# Unknown modalities and misspelt keywords.


def test_unknown_chat_content_type_is_refused_instead_of_dropped(processor):
    conversation = [
        {"role": "user", "content": [{"type": "smell", "smell": "rose"}, {"type": "text", "text": "what"}]}
    ]
    with pytest.raises(
        ValueError, match=r"`conversation` content parts must have a `type` among .*got 'smell'"
    ):
        processor.apply_chat_template(conversation, tokenize=True, return_dict=True)


def test_misspelt_media_keyword_is_a_type_error_that_suggests_the_right_one(processor):
    with pytest.raises(TypeError, match=r"unexpected keyword argument `image` \(did you mean `images`\?\)"):
        processor(image=[random_image(0)], text="<image> what")


def test_media_for_an_interface_the_processor_does_not_know_is_refused():
    image_only = build_tiny_processor(modalities=("image",))
    with pytest.raises(
        ValueError, match=r"`num_query_tokens` has no 'point_cloud' entry \(it has \['image'\]\)"
    ):
        image_only(point_clouds=[cloud(80)], text="<point_cloud> what")


def test_text_of_the_wrong_type_is_a_type_error(processor):
    with pytest.raises(TypeError, match="`text` must be a string or a list of strings, got int"):
        processor(text=42)


def test_empty_text_is_refused(processor):
    with pytest.raises(
        ValueError, match=r"`text` must give at least one token per sample; sample\(s\) \[1\] give none"
    ):
        processor(text=["what", ""])


# Images.


def test_complex_valued_image_array_is_a_type_error(processor):
    with pytest.raises(
        TypeError, match=r"`images\[0\]` must hold integers \(0-255\) or floats, got dtype complex64"
    ):
        processor(images=[np.zeros((32, 32, 3), dtype=np.complex64)], text="<image> what")


def test_image_with_zero_pixels_is_refused(processor):
    with pytest.raises(ValueError, match=r"`images\[0\]` must have at least one pixel, got a 0x0 image"):
        processor(images=[Image.new("RGB", (0, 0))], text="<image> what")


def test_grayscale_image_is_converted_to_rgb(processor):
    grayscale = random_image(0).convert("L")
    pixels = processor(images=[grayscale], text="<image> what")["pixel_values"]
    expected = processor(images=[grayscale.convert("RGB")], text="<image> what")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    torch.testing.assert_close(pixels, expected, atol=1e-5, rtol=0)


def test_rgba_image_is_composited_on_white_and_converted_to_rgb(processor):
    """BLIP's image processor (`do_convert_rgb`) lays RGBA images over a white background."""
    rgba = random_image(0).convert("RGBA")
    rgba.putalpha(128)
    pixels = processor(images=[rgba], text="<image> what")["pixel_values"]
    on_white = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    expected = processor(images=[on_white], text="<image> what")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    torch.testing.assert_close(pixels, expected, atol=1e-5, rtol=0)


def test_grayscale_array_gets_three_equal_channels_like_a_grayscale_image(processor):
    grayscale = random_image(0).convert("L")
    from_array = processor(images=[np.asarray(grayscale)], text="<image> what")["pixel_values"]
    from_image = processor(images=[grayscale], text="<image> what")["pixel_values"]
    torch.testing.assert_close(from_array, from_image, atol=1e-5, rtol=0)


def test_corrupt_image_file_is_refused_with_its_name(processor, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a png at all" * 4)
    with pytest.raises(
        ValueError,
        match=r"`images\[0\]` must be an image file, URL, data URI, base64 string or bytes that decodes",
    ):
        processor(images=[str(path)], text="<image> what")


# Audio and speech.


def test_empty_audio_is_refused(processor):
    with pytest.raises(
        ValueError, match=r"`audio\[0\]` is empty \(shape \(0,\)\); expected at least one sample"
    ):
        processor(audio=[np.zeros(0, dtype=np.float32)], text="<audio> what")


def test_all_nan_audio_is_refused(processor):
    with pytest.raises(
        ValueError, match=r"`audio\[0\]` contains 8000 NaN or infinite samples; expected finite"
    ):
        processor(audio=[np.full(8000, np.nan, dtype=np.float32)], text="<audio> what")


def test_audio_at_another_sampling_rate_is_resampled(processor):
    clip_8k = sine(1.0, sampling_rate=8000)
    resampled = torchaudio.functional.resample(torch.from_numpy(clip_8k), 8000, SAMPLING_RATE).numpy()
    features = processor(audio=[{"array": clip_8k, "sampling_rate": 8000}], text="<audio> what")
    expected = processor(audio=[resampled], text="<audio> what")
    torch.testing.assert_close(features["audio_features"], expected["audio_features"], atol=1e-5, rtol=0)


def test_stereo_audio_is_down_mixed_to_the_channel_mean(processor):
    left, right = sine(1.0, frequency=440.0), sine(1.0, frequency=660.0)
    stereo = processor(audio=[np.stack([left, right])], text="<audio> what")["audio_features"]
    mono = processor(audio=[(left + right) / 2], text="<audio> what")["audio_features"]
    torch.testing.assert_close(stereo, mono, atol=1e-5, rtol=0)


def test_audio_longer_than_max_windows_is_truncated_with_a_warning(processor):
    with pytest.warns(UserWarning, match="spans 5 windows; keeping the first 2"):
        features = processor(audio=[sine(3.0)], text="<audio> what", max_windows=2)
    assert features["audio_features"].shape[:2] == (1, 2)
    assert features["audio_window_mask"].tolist() == [[1, 1]]


def test_audio_with_a_non_positive_sampling_rate_is_refused(processor):
    with pytest.raises(
        ValueError, match=r"`orig_sampling_rate` must be a positive whole number of Hz, got -8000"
    ):
        processor(audio=[{"array": sine(0.5), "sampling_rate": -8000}], text="<audio> what")


def test_all_nan_speech_is_refused(processor):
    with pytest.raises(ValueError, match=r"`speech\[0\]` contains 1600 NaN or infinite samples"):
        processor(speech=[np.full(1600, np.nan, dtype=np.float32)], text="<speech> what")


def test_speech_transcripts_must_match_the_speech_inputs(processor):
    with pytest.raises(
        ValueError, match="`speech_transcripts` must have one entry per speech input: got 2 for 1"
    ):
        processor(speech=[sine(0.5)], text="<speech> what", speech_transcripts=["red", "blue"])


# Videos.


def test_video_with_zero_frames_is_refused(processor):
    with pytest.raises(
        ValueError, match="`videos` contains a video with zero frames; expected at least one frame"
    ):
        processor(videos=[random_video(0)], text="<video> what")


def test_video_with_fewer_frames_than_requested_repeats_frames_with_a_warning(processor):
    with pytest.warns(UserWarning, match="A video has 2 frames but 4 were requested; frames are repeated"):
        frames = processor(videos=[random_video(2)], text="<video> what")["pixel_values_videos"][0]
    assert frames.shape[0] == 4
    torch.testing.assert_close(frames[0], frames[1], atol=0, rtol=0)
    torch.testing.assert_close(frames[2], frames[3], atol=0, rtol=0)
    assert not torch.equal(frames[1], frames[2])


def test_corrupt_video_file_is_refused_with_its_path(processor, tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(ValueError, match=r"`videos\[0\]` must be a video that decodes; .*broken\.mp4"):
        processor(videos=[str(path)], text="<video> what")


# Point clouds.


def test_point_cloud_with_nan_is_refused(processor):
    points = cloud(80)
    points[3, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"`point_clouds\[0\]` must hold finite values, got 1 NaN or inf entries"
    ):
        processor(point_clouds=[points], text="<point_cloud> what")


def test_point_cloud_with_too_few_points_is_topped_up_with_a_warning(processor):
    with pytest.warns(UserWarning, match=r"`point_clouds\[0\]` has 10 points, fewer than num_points=64"):
        clouds = processor(point_clouds=[cloud(10)], text="<point_cloud> what")["point_clouds"]
    assert clouds.shape == (1, 64, 3)
    assert torch.unique(clouds[0], dim=0).shape[0] == 10


def test_point_cloud_of_the_wrong_shape_is_refused(processor):
    with pytest.raises(
        ValueError, match=r"`point_clouds\[0\]` must have shape \(points, 3\) or \(points, 6\), got \(80, 4\)"
    ):
        processor(point_clouds=[np.zeros((80, 4))], text="<point_cloud> what")


# Text length and labels.


def test_text_longer_than_max_length_loses_its_beginning_after_bos_with_a_warning(processor):
    text = "<s> " + "red " * 20 + "<image> what colour is it ?"  # 1 + 20 + 4 image tokens + 5
    with pytest.warns(UserWarning, match=r"`text\[0\]` is 30 tokens long, more than `max_length`=12"):
        inputs = processor(images=[random_image(0)], text=text, max_length=12)
    input_ids = inputs["input_ids"][0]
    full = processor(images=[random_image(0)], text=text)["input_ids"][0]
    assert len(input_ids) == 12
    assert input_ids[0] == processor.tokenizer.bos_token_id
    assert input_ids[1:].tolist() == full[-11:].tolist()


def test_truncation_that_would_cut_a_media_placeholder_is_refused(processor):
    with pytest.raises(
        ValueError, match=r"`text\[0\]` is 9 tokens long and `max_length` is 8: .*would cut a media"
    ):
        processor(images=[random_image(0)], text="<image> what colour is it ?", max_length=8)


def test_training_conversation_without_an_answer_is_refused(processor):
    conversation = [{"role": "user", "content": [{"type": "text", "text": "what colour is it ?"}]}]
    with pytest.raises(
        ValueError, match=r"`conversation` must have an assistant answer .* \[0\] have no assistant"
    ):
        processor.apply_chat_template(
            conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )


# Configs and checkpoints.


def image_config(**interface_kwargs) -> XLLMConfig:
    return XLLMConfig(
        text_config=tiny_text_config(vocab_size=len(tiny_tokenizer())),
        vision_config=tiny_vision_config(),
        image_interface_config=tiny_interface_config(**interface_kwargs),
        image_token_id=4,
    )


def test_interface_output_width_disagreeing_with_the_llm_is_refused():
    with pytest.raises(
        ValueError, match=r"`image_interface_config.output_hidden_size` is 48 but the LLM .* is 32"
    ):
        image_config(output_hidden_size=48)


def test_interface_encoder_width_disagreeing_with_the_encoder_is_refused():
    with pytest.raises(
        ValueError, match=r"`image_interface_config.encoder_hidden_size` is 64 but .* width 32"
    ):
        image_config(encoder_hidden_size=64)


def test_placeholder_token_outside_the_vocabulary_is_refused():
    with pytest.raises(
        ValueError, match=r"`image_token_id` must index the LLM vocabulary \(size 10\), got 40"
    ):
        XLLMConfig(
            text_config=tiny_text_config(vocab_size=10),
            vision_config=tiny_vision_config(),
            image_interface_config=tiny_interface_config(),
            image_token_id=40,
        )


def test_model_input_with_unexpanded_placeholders_names_both_counts(tiny_model, tiny_processor):
    inputs = tiny_processor(images=[random_image(0)], text="<image> what")
    image_token = tiny_processor.placeholder_ids["image"]
    inputs["input_ids"] = torch.tensor([[1, image_token, 5]])
    inputs["attention_mask"] = torch.ones(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="The text has 1 image placeholder tokens but the 1 image input"):
        tiny_model(**inputs)


# Tensors given straight to `forward`: the one shape contract names the argument.


def all_media_inputs(processor) -> dict:
    """Model inputs with every modality: one item each, in one sample."""
    text = "<image> <video> <speech> <audio> <point_cloud> what"
    return dict(
        processor(
            text=text,
            images=[random_image(0)],
            videos=[random_video(2)],
            speech=[sine(0.5)],
            audio=[sine(0.7)],
            point_clouds=[cloud(80)],
        )
    )


@pytest.mark.parametrize(
    "name, damage, message",
    [
        (
            "pixel_values",
            lambda t: t[0],
            r"`pixel_values` must be a 4-dimensional tensor .* got shape \(3, 32, 32\)",
        ),
        ("pixel_values", lambda t: t[:, :1], r"`pixel_values` must have 3 channels .* got 1"),
        (
            "pixel_values",
            lambda t: (t * 255).to(torch.uint8),
            r"`pixel_values` must hold floating-point values, got dtype torch.uint8",
        ),
        ("pixel_values_videos", lambda t: t[:, 0], r"`pixel_values_videos` must be a 5-dimensional tensor"),
        (
            "point_clouds",
            lambda t: torch.cat([t, t], dim=-1),
            r"`point_clouds` must have 3 channels .* got 6",
        ),
        ("point_clouds", lambda t: t[0], r"`point_clouds` must be a 3-dimensional tensor"),
        ("audio_features", lambda t: t.flatten(0, 1), r"`audio_features` must be a 4-dimensional tensor"),
        ("audio_window_mask", lambda t: t.float(), r"`audio_window_mask` must be a bool or integer tensor"),
        (
            "audio_window_mask",
            lambda t: torch.cat([t, t], dim=1),
            r"`audio_window_mask` must have shape \(1, \d+\)",
        ),
        ("speech_features", lambda t: t.long(), r"`speech_features` must hold floating-point values"),
        ("speech_attention_mask", lambda t: t[:, :5], r"`speech_attention_mask` must have shape \(1, time\)"),
    ],
)
def test_each_wrong_media_tensor_given_to_forward_is_a_value_error_naming_it(
    tiny_model, name, damage, message
):
    inputs = all_media_inputs(build_tiny_processor(modalities=ALL_MODALITIES))
    inputs[name] = damage(inputs[name])
    with pytest.raises(ValueError, match=message):
        tiny_model(**inputs)


def test_media_items_that_do_not_match_the_texts_placeholders_name_both(tiny_model):
    inputs = all_media_inputs(build_tiny_processor(modalities=ALL_MODALITIES))
    inputs["pixel_values"] = torch.cat([inputs["pixel_values"]] * 2)  # two images, one <image> block
    with pytest.raises(
        ValueError, match=r"4 image placeholder tokens but the 2 image input\(s\) in `pixel_values` give 8"
    ):
        tiny_model(**inputs)
    inputs = all_media_inputs(build_tiny_processor(modalities=ALL_MODALITIES))
    inputs["speech_features"] = torch.cat([inputs["speech_features"]] * 2)
    inputs["speech_attention_mask"] = torch.cat([inputs["speech_attention_mask"]] * 2)
    with pytest.raises(ValueError, match=r"1 speech placeholder tokens but the 2 speech input\(s\)"):
        tiny_model(**inputs)


def test_instruction_rows_that_do_not_match_the_batch_are_refused(tiny_model):
    inputs = all_media_inputs(build_tiny_processor(modalities=ALL_MODALITIES))
    inputs["qformer_input_ids"] = torch.cat([inputs["qformer_input_ids"]] * 2)
    with pytest.raises(
        ValueError, match=r"`qformer_input_ids` must have one row per sample of `input_ids` \(1\), got 2"
    ):
        tiny_model(**inputs)


def test_a_mask_without_its_media_is_refused(tiny_model):
    inputs = all_media_inputs(build_tiny_processor(modalities=ALL_MODALITIES))
    del inputs["audio_features"]
    with pytest.raises(ValueError, match="`audio_window_mask` was given without `audio_features`"):
        tiny_model(**inputs)


def test_checkpoint_whose_weights_do_not_match_the_config_is_refused(image_model_dir, tmp_path):
    """transformers logs a LOAD REPORT (MISMATCH rows) and raises a RuntimeError naming
    `ignore_mismatched_sizes`; passing it re-initialises the mismatched weights instead."""
    shutil.copytree(image_model_dir, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config["image_interface_config"]["num_query_tokens"] = 8
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForImageTextToText.from_pretrained(tmp_path)


def test_truncated_safetensors_file_is_a_value_error(image_model_dir, tmp_path):
    shutil.copytree(image_model_dir, tmp_path, dirs_exist_ok=True)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(
        ValueError, match="must hold complete safetensors weights, but a weights file is truncated"
    ):
        AutoModelForImageTextToText.from_pretrained(tmp_path)


def test_an_interface_config_for_a_modality_the_table_lacks_is_refused_not_ignored():
    with pytest.raises(
        ValueError, match=r"got \['depth_interface_config'\], but the modality table knows only"
    ):
        XLLMConfig(
            text_config=tiny_text_config(vocab_size=len(tiny_tokenizer())),
            vision_config=tiny_vision_config(),
            depth_interface_config=tiny_interface_config().to_dict(),
        )
