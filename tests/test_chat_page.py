"""`xllm chat MODEL --web`: the Gradio page in headless Chromium, and how it reads uploads and history."""

import pytest
from chat_page_browser import (
    chat_in_browser,
    chat_page_running,
    headless_chromium,
    installed_browser,
    normalised,
)
from media_files import png_bytes
from serving_helpers import reference_answer

from xllm.chat.web_page import ChatPage, upload_modalities
from xllm.testing import tiny_model_and_processor


def test_a_user_uploads_an_image_asks_twice_and_reads_the_answers_generate_gives(tiny, tmp_path):
    picture = tmp_path / "red.png"
    picture.write_bytes(png_bytes("red"))
    try:
        installed_browser()
    except RuntimeError as error:  # the browser is part of the test set-up: missing, it is a failure
        pytest.fail(str(error))
    with headless_chromium() as driver, chat_page_running(*tiny) as url:
        answers = chat_in_browser(
            driver, url, [(picture, "what colour is it ?"), (None, "which shape is it ?")]
        )
        driver.save_screenshot(str(tmp_path / "chat-page.png"))
    first_turn = [{"role": "user", "content": [{"type": "image", "image": str(picture)}, {"type": "text", "text": " what colour is it ?"}]}]  # fmt: skip
    first = reference_answer(*tiny, first_turn, max_tokens=64)[0]
    second_turn = [
        *first_turn,
        {"role": "assistant", "content": first},
        {"role": "user", "content": " which shape is it ?"},
    ]
    second = reference_answer(*tiny, second_turn, max_tokens=64)[0]
    assert answers == [normalised(first), normalised(second)]
    assert (tmp_path / "chat-page.png").stat().st_size > 10_000


def test_uploads_are_offered_only_for_the_modalities_the_model_has():
    everything = upload_modalities(["image", "video", "speech", "audio", "point_cloud"])
    assert everything[".wav"] == ["speech", "audio"] and everything[".ply"] == ["point_cloud"]
    without_3d = upload_modalities(["image", "audio"])
    assert ".ply" not in without_3d and ".npy" not in without_3d and without_3d[".wav"] == ["audio"]


def test_the_history_of_the_page_becomes_the_conversation_with_each_audio_file_where_it_was_sent():
    model, processor = tiny_model_and_processor()
    page = ChatPage(model, processor)
    history = [
        {"role": "user", "content": {"path": "/uploads/a.wav"}},
        {"role": "user", "content": "what do you hear ?"},
        {"role": "assistant", "content": "a sound"},
    ]
    page.audio_of_file["/uploads/a.wav"] = "audio"  # sent as a sound on the first turn
    message = {"text": "and this ?", "files": ["/uploads/b.wav", "/uploads/c.png"]}
    conversation = page.conversation(message, history, audio_kind="speech")
    assert conversation == [
        {
            "role": "user",
            "content": [
                {"type": "audio", "audio": "/uploads/a.wav"},
                {"type": "text", "text": " what do you hear ?"},
            ],
        },  # fmt: skip
        {"role": "assistant", "content": [{"type": "text", "text": "a sound"}]},
        {
            "role": "user",
            "content": [
                {"type": "speech", "speech": "/uploads/b.wav"},
                {"type": "image", "image": "/uploads/c.png"},
                {"type": "text", "text": " and this ?"},
            ],
        },  # fmt: skip
    ]


def test_a_file_the_model_cannot_read_is_refused_by_name():
    model, processor = tiny_model_and_processor(point_clouds=False)
    page = ChatPage(model, processor)
    with pytest.raises(Exception, match=r"cloud\.ply: this model reads"):
        page.conversation({"text": "what is it ?", "files": ["/uploads/cloud.ply"]}, [], audio_kind="speech")
