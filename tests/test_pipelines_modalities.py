"""pipeline("any-to-any") and pipeline("image-text-to-text") on every modality, batched, with generation arguments."""

import numpy as np
import pytest
import torch
from conftest import random_image, random_video
from transformers import pipeline

from xllm.pipelines import XLLMAnyToAnyPipeline, XLLMImageTextToTextPipeline
from xllm.testing import tiny_model_and_processor

GENERATION = dict(max_new_tokens=3, min_new_tokens=3, do_sample=False)
MODALITIES = ("image", "video", "speech", "audio", "point_cloud")


def waveform(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def point_cloud(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((100, 3)).astype(np.float32)


MEDIA = {
    "image": lambda: random_image(0),
    "video": lambda: random_video(4),
    "speech": lambda: waveform(1.0),
    "audio": lambda: waveform(1.5),
    "point_cloud": point_cloud,
}


def chat(*modalities: str, question: str = "what is it ?") -> list[dict]:
    parts = [{"type": m, m: MEDIA[m]()} for m in modalities]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": question}]}]


def save(model, processor, folder):
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """Image, video, speech, audio and point-cloud interfaces."""
    return save(*tiny_model_and_processor(), tmp_path_factory.mktemp("all_modalities"))


@pytest.fixture(scope="module")
def pipe(tiny_folder):
    return pipeline("any-to-any", model=tiny_folder)


@pytest.fixture(scope="module")
def batching_pipe(tiny_folder):
    return pipeline("any-to-any", model=tiny_folder, pipeline_class=XLLMAnyToAnyPipeline)


@pytest.fixture
def interface_calls(request):
    """Counts the forward calls of each interface of the pipeline's model (`pipe` by default)."""
    model = request.getfixturevalue(getattr(request, "param", "pipe")).model
    calls = dict.fromkeys(model.model.interfaces, 0)
    handles = [
        interface.register_forward_hook(lambda *_, m=m: calls.__setitem__(m, calls[m] + 1))
        for m, interface in model.model.interfaces.items()
    ]
    yield calls
    for handle in handles:
        handle.remove()


def generate_answer(model, processor, messages) -> str:
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    generated = model.generate(**inputs, **GENERATION)[:, inputs["input_ids"].shape[1] :]
    return processor.batch_decode(generated, skip_special_tokens=True)[0]


@pytest.mark.parametrize("modality", MODALITIES)
def test_chat_content_of_each_modality_runs_its_interface_and_matches_generate(
    pipe, interface_calls, modality
):
    messages = chat(modality)
    [result] = pipe(text=messages, generate_kwargs=GENERATION, return_full_text=False)
    assert {m for m, count in interface_calls.items() if count} == {modality}
    expected = generate_answer(pipe.model, pipe.processor, messages)
    assert result["generated_text"].split() == expected.split()
    assert len(expected.split()) == GENERATION["max_new_tokens"]


def test_chat_message_with_two_modalities_runs_both_interfaces(pipe, interface_calls):
    [result] = pipe(
        text=chat("image", "point_cloud", question="which one is red ?"), generate_kwargs=GENERATION
    )
    assert interface_calls["image"] == 1 and interface_calls["point_cloud"] == 1
    assert result["generated_text"][-1]["role"] == "assistant"


def test_non_chat_mode_passes_images_videos_and_an_audio_stream_to_their_interfaces(pipe, interface_calls):
    prompt = "<image> <video> <audio> what is it ?"
    [result] = pipe(
        text=prompt,
        images=MEDIA["image"](),
        videos=MEDIA["video"](),
        audio=MEDIA["audio"](),
        generate_kwargs=GENERATION,
    )
    assert {m for m, count in interface_calls.items() if count} == {"image", "video", "audio"}
    assert result["generated_text"].startswith(prompt)


def test_non_chat_audio_goes_to_the_speech_interface_when_the_model_has_no_audio_interface(tmp_path):
    folder = save(*tiny_model_and_processor(audio_model_type=None, point_clouds=False), tmp_path)
    speech_pipe = pipeline("any-to-any", model=folder)
    calls = []
    speech_pipe.model.model.interfaces["speech"].register_forward_hook(lambda *_: calls.append(1))
    prompt = "<speech> what is it ?"
    [result] = speech_pipe(text=prompt, audio=waveform(1.0), generate_kwargs=GENERATION)
    assert calls and "audio" not in speech_pipe.model.model.interfaces
    assert len(result["generated_text"][len(prompt) :].split()) == GENERATION["max_new_tokens"]


def test_list_of_chats_gives_one_answer_per_chat(pipe):
    results = pipe(text=[chat("speech"), chat("point_cloud")], generate_kwargs=GENERATION)
    assert len(results) == 2
    for messages, [result] in zip([chat("speech"), chat("point_cloud")], results, strict=True):
        assert result["generated_text"][-1]["role"] == "assistant"
        assert len(result["generated_text"]) == len(messages) + 1


def test_batch_collation_equals_the_processor_batching_the_same_inputs(batching_pipe):
    items = [
        {"text": "<image> what is it ?", "images": MEDIA["image"]()},
        {"text": "<speech> <audio> describe the sound", "speech": waveform(0.6), "audio": waveform(1.5)},
        {"text": "<speech> <audio> <point_cloud> which one", "speech": waveform(1.1), "audio": waveform(0.5),
         "point_clouds": point_cloud()},
    ]  # fmt: skip
    collated = batching_pipe.collate([batching_pipe.preprocess(item) for item in items])
    expected = batching_pipe.processor(
        text=[item["text"] for item in items],
        images=[items[0]["images"]],
        speech=[items[1]["speech"], items[2]["speech"]],
        audio=[items[1]["audio"], items[2]["audio"]],
        point_clouds=[items[2]["point_clouds"]],
    )
    assert collated["text"] == [item["text"] for item in items]
    assert set(collated) - {"text"} == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(collated[key], value, atol=0, rtol=0, msg=key)


@pytest.mark.parametrize("interface_calls", ["batching_pipe"], indirect=True)
def test_batch_size_four_gives_the_one_by_one_answers_for_mixed_modalities(batching_pipe, interface_calls):
    chats = [
        chat(m, question=q)
        for m, q in zip(MODALITIES[1:], ["what is it ?", "describe it", "how many", "which one"], strict=True)
    ]
    batched = batching_pipe(text=chats, batch_size=4, generate_kwargs=GENERATION, return_full_text=False)
    assert all(interface_calls[m] == 1 for m in MODALITIES[1:])  # one forward for the whole batch
    one_by_one = batching_pipe(text=chats, batch_size=1, generate_kwargs=GENERATION, return_full_text=False)
    assert [r["generated_text"] for [r] in batched] == [r["generated_text"] for [r] in one_by_one]


def test_max_new_tokens_and_generate_kwargs_reach_generate(pipe, monkeypatch):
    seen = {}
    original_generate = pipe.model.generate

    def recording_generate(**kwargs):
        seen.update(kwargs)
        return original_generate(**kwargs)

    monkeypatch.setattr(pipe.model, "generate", recording_generate)
    [result] = pipe(
        text="<image> what is it ?",
        images=MEDIA["image"](),
        max_new_tokens=2,
        generate_kwargs=dict(min_new_tokens=2, num_beams=2, do_sample=False),
        return_tensors=True,
    )
    assert seen["max_new_tokens"] == 2 and seen["num_beams"] == 2 and seen["min_new_tokens"] == 2
    assert len(result["generated_token_ids"]) == seen["input_ids"].shape[1] + 2


def test_image_text_to_text_batches_image_chats_like_one_by_one(tiny_folder):
    image_pipe = pipeline("image-text-to-text", model=tiny_folder, pipeline_class=XLLMImageTextToTextPipeline)
    chats = [
        [
            {
                "role": "user",
                "content": [{"type": "image", "image": random_image(seed)}, {"type": "text", "text": q}],
            }
        ]
        for seed, q in enumerate(["what colour is it ?", "describe the image", "what shape"])
    ]
    batched = image_pipe(text=chats, batch_size=3, generate_kwargs=GENERATION, return_full_text=False)
    one_by_one = image_pipe(text=chats, batch_size=1, generate_kwargs=GENERATION, return_full_text=False)
    assert len(batched) == 3
    assert [r["generated_text"] for [r] in batched] == [r["generated_text"] for [r] in one_by_one]
