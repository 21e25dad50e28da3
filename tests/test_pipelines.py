"""transformers pipelines run a saved X-LLM checkpoint on an image and a prompt."""

import pytest
from conftest import random_image
from transformers import pipeline

NEW_TOKENS = 3
GENERATION = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)


@pytest.fixture(scope="module", params=["any-to-any", "image-text-to-text"])
def pipe(request, saved_tiny_dir):
    return pipeline(request.param, model=str(saved_tiny_dir))


def test_pipeline_generates_for_an_image_and_a_plain_text_prompt(pipe):
    prompt = "<image> what colour is it ?"
    [result] = pipe(images=random_image(0), text=prompt, generate_kwargs=GENERATION)
    assert result["generated_text"].startswith(prompt)
    continuation = result["generated_text"][len(prompt) :].split()
    assert 1 <= len(continuation) <= NEW_TOKENS


def test_pipeline_generates_for_chat_messages(pipe):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": random_image(0)},
                {"type": "text", "text": "what colour is it ?"},
            ],
        }
    ]
    [result] = pipe(text=messages, generate_kwargs=GENERATION)
    conversation = result["generated_text"]
    assert conversation[:-1] == messages
    assert conversation[-1]["role"] == "assistant"
    assert 1 <= len(conversation[-1]["content"].split()) <= NEW_TOKENS


def test_pipeline_answer_matches_model_generate(pipe, tiny_model, tiny_processor):
    prompt = "<image> what colour is it ?"
    inputs = tiny_processor(images=[random_image(0)], text=prompt)
    generated = tiny_model.generate(**inputs, **GENERATION)[:, inputs["input_ids"].shape[1] :]
    expected = tiny_processor.batch_decode(generated, skip_special_tokens=True)[0]
    [result] = pipe(images=random_image(0), text=prompt, generate_kwargs=GENERATION, return_full_text=False)
    assert result["generated_text"].split() == expected.split()
