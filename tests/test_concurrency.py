"""One loaded pipeline shared by several threads answers exactly as it does one call at a time."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import random_image
from transformers import pipeline

THREADS = 4
CALLS_PER_THREAD = 2
GENERATION = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False)
QUESTIONS = ["what colour is it ?", "describe the image", "how many are there ?", "which shape is it ?"]


@pytest.fixture(scope="module")
def pipe(saved_tiny_dir):
    return pipeline("any-to-any", model=str(saved_tiny_dir))


def requests() -> list[dict]:
    """Distinct requests (image, question, plain text or chat) so that a mix-up between threads shows."""
    plain = [
        dict(images=random_image(index), text=f"<image> {question}")
        for index, question in enumerate(QUESTIONS)
    ]
    chats = [
        dict(
            text=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": random_image(10 + index)},
                        {"type": "text", "text": question},
                    ],
                }
            ]
        )
        for index, question in enumerate(QUESTIONS)
    ]
    return plain + chats


def answer(pipe, request: dict) -> str:
    [result] = pipe(**request, generate_kwargs=GENERATION, return_full_text=False)
    return result["generated_text"]


def test_four_threads_sharing_one_pipeline_give_the_sequential_answers(pipe):
    work = requests() * CALLS_PER_THREAD
    sequential = [answer(pipe, request) for request in work]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        concurrent = list(pool.map(lambda request: answer(pipe, request), work))
    assert concurrent == sequential
    assert len(set(sequential)) > 1  # the requests really differ, so a mix-up would show
