"""X-InstructBLIP: audio and 3D interfaces, modality cues, several modalities per prompt, linear ablation."""

import numpy as np
import pytest
import torch
from conftest import random_image, random_video

from xllm import XLLMProcessor
from xllm.modeling_xllm.model_modalities import default_modality_cues
from xllm.testing import tiny_model_and_processor
from xllm.trainers.data import shuffle_media_parts

ALL_MEDIA_PROMPT = "<image> <point_cloud> <audio> and <video> : which one is red ?"


def sound(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def cloud(seed: int = 0, points: int = 100) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((points, 3))


@pytest.fixture(scope="module")
def cued():
    """Tiny model with every modality and X-InstructBLIP's modality cues."""
    return tiny_model_and_processor(modality_cues=default_modality_cues())


def all_media_inputs(processor, **kwargs):
    return processor(
        images=[random_image(0)],
        videos=[random_video(4)],
        audio=[sound(1.0)],
        point_clouds=[cloud()],
        text=ALL_MEDIA_PROMPT,
        **kwargs,
    )


def test_prompt_with_image_3d_audio_and_video_generates(cued):
    model, processor = cued
    inputs = all_media_inputs(processor)
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, inputs["input_ids"].shape[1] + 4)
    features = model(**inputs).modality_features
    assert sorted(features) == ["audio", "image", "point_cloud", "video"]
    assert features["audio"].shape[1] == 2 * processor.num_query_tokens["audio"]  # 1 s = two 0.64 s windows


def test_modality_cues_precede_each_media_block(cued):
    _, processor = cued
    tokens = processor.tokenizer.convert_ids_to_tokens(all_media_inputs(processor)["input_ids"][0])
    placeholders = ["<image>", "<point_cloud>", "<audio>", "<video>"]
    cues = [tokens[tokens.index(placeholder) - 2 : tokens.index(placeholder)] for placeholder in placeholders]
    assert cues == [["image", ":"], ["3d", ":"], ["audio", ":"], ["video", ":"]]


def test_modality_cues_are_off_unless_configured():
    _, processor = tiny_model_and_processor()
    tokens = processor.tokenizer.convert_ids_to_tokens(
        processor(images=[random_image(0)], text="<image> ?")["input_ids"][0]
    )
    assert tokens == ["<image>"] * processor.num_query_tokens["image"] + ["?"]


def test_cue_tokens_stay_out_of_the_assistant_labels(cued):
    _, processor = cued
    messages = [
        {
            "role": "user",
            "content": [{"type": "audio", "audio": sound(0.5)}, {"type": "text", "text": "what ?"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
    ]
    inputs = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    trained = inputs["labels"][0] != -100
    assert processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0][trained]) == ["red", "</s>"]
    assert "audio" in processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0][~trained])


def test_batch_of_audio_with_different_window_counts_equals_one_by_one(cued):
    model, processor = cued
    clips, texts = [sound(0.5, seed=1), sound(1.5, seed=2)], ["<audio> what ?", "which sound is it ?<audio>"]
    batch = processor(audio=clips, text=texts)
    assert batch["audio_window_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    batched_logits = model(**batch).logits[:, -1]
    for index, (clip, text) in enumerate(zip(clips, texts, strict=True)):
        single_logits = model(**processor(audio=[clip], text=text)).logits[:, -1]
        torch.testing.assert_close(batched_logits[index], single_logits[0], atol=1e-5, rtol=1e-5)


def test_training_window_count_pads_and_truncates_audio(cued):
    _, processor = cued
    padded = processor(audio=[sound(0.5)], text="<audio>", max_windows=2)
    assert padded["audio_window_mask"].tolist() == [[1, 0]]
    with pytest.warns(UserWarning, match="keeping the first 2"):
        truncated = processor(audio=[sound(2.0)], text="<audio>", max_windows=2)
    assert truncated["audio_features"].shape[1] == 2
    assert int((truncated["input_ids"] == processor.placeholder_ids["audio"]).sum()) == 2 * 4


def media_conversation() -> list[dict]:
    content = [
        {"type": "image", "image": random_image(0)},
        {"type": "text", "text": "and"},
        {"type": "audio", "audio": sound(0.5)},
        {"type": "point_cloud", "point_cloud": cloud()},
        {"type": "text", "text": "which one is red ?"},
    ]
    return [
        {"role": "user", "content": content},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
    ]


def test_shuffling_modality_order_changes_input_ids_but_not_the_set_of_features(cued):
    model, processor = cued
    original = media_conversation()
    order = [part["type"] for part in original[0]["content"]]
    for seed in range(20):
        torch.manual_seed(seed)
        shuffled = shuffle_media_parts(original)
        if [part["type"] for part in shuffled[0]["content"]] != order:
            break
    chat = dict(tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    before, after = (
        processor.apply_chat_template(original, **chat),
        processor.apply_chat_template(shuffled, **chat),
    )
    assert not torch.equal(before["input_ids"], after["input_ids"])
    assert sorted(before["input_ids"][0].tolist()) == sorted(after["input_ids"][0].tolist())
    features_before = model(**before).modality_features
    features_after = model(**after).modality_features
    assert features_before.keys() == features_after.keys() == {"image", "audio", "point_cloud"}
    for modality, features in features_before.items():
        torch.testing.assert_close(features_after[modality], features, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("audio_model_type", "windows"), [("audio-spectrogram-transformer", 3), ("whisper", 2)]
)
def test_transformers_audio_encoders_read_windows_cut_by_the_processor(audio_model_type, windows):
    model, processor = tiny_model_and_processor(
        audio_model_type=audio_model_type, speech_model_type=None, point_clouds=False
    )
    inputs = processor(audio=[sound(1.5), sound(0.3)], text=["<audio> what ?", "<audio> which ?"])
    assert inputs["audio_window_mask"].tolist() == [[1] * windows, [1] + [0] * (windows - 1)]
    features = model(**inputs).modality_features["audio"]  # (audios, windows * queries, width)
    assert features.shape[:2] == (2, windows * 4)
    assert features[1, 4:].abs().sum() == 0  # the padded windows of the short clip: zeros, not in the text
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3


def test_audio_goes_to_the_speech_interface_when_the_model_has_no_audio_one():
    _, processor = tiny_model_and_processor(audio_model_type=None, point_clouds=False)
    inputs = processor(audio=[sound(0.5)], text="<speech> what ?")
    assert "speech_features" in inputs and "audio_features" not in inputs
    _, with_audio = tiny_model_and_processor(point_clouds=False)
    assert "audio_features" in with_audio(audio=[sound(0.5)], text="<audio> what ?")


def test_linear_interface_trains_and_generates():
    model, processor = tiny_model_and_processor(interface_kind="linear", speech_model_type=None)
    conversation = media_conversation()
    inputs = processor.apply_chat_template(
        conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    inputs.pop("assistant_masks")
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(
        name.startswith("model.interfaces.") for name, p in model.named_parameters() if p.requires_grad
    )
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    losses = []
    for _ in range(3):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    assert losses[-1] < losses[0]
    prompt = processor(
        images=[random_image(0)],
        audio=[sound(0.5)],
        point_clouds=[cloud()],
        text=ALL_MEDIA_PROMPT.replace(" and <video>", ""),
    )
    generated = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 3


def test_processor_with_audio_and_point_cloud_extractors_round_trips(cued, tmp_path):
    _, processor = cued
    processor.save_pretrained(tmp_path)
    reloaded = XLLMProcessor.from_pretrained(tmp_path)
    assert reloaded.modality_cues == processor.modality_cues
    assert reloaded.modalities == processor.modalities
    assert reloaded.audio_feature_extractor.window_seconds == processor.audio_feature_extractor.window_seconds
    expected, actual = all_media_inputs(processor), all_media_inputs(reloaded)
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name
