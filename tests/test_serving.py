"""`xllm serve` with the official `openai` client: every modality, streaming, batching, sampling, beams."""

import http.server
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from media_files import data_uri, png_bytes
from serving_helpers import (
    MEDIA,
    MODEL_ID,
    QUESTIONS,
    client,
    post,
    reference_answer,
    running_server,
    user_turn,
)

from xllm.serving.limits import ServingLimits
from xllm.serving.media import MediaAccess


@pytest.fixture(scope="module")
def server(tiny):
    model, processor = tiny
    with running_server(model, processor) as (url, served):
        yield url, served


def ask(url: str, messages: list[dict], **options):
    return client(url).chat.completions.create(model=MODEL_ID, messages=messages, **options)


def streamed(url: str, messages: list[dict], **options) -> tuple[dict[int, str], dict[int, str], list]:
    """(text per choice, finish reason per choice, chunks) of a streaming request."""
    chunks = list(ask(url, messages, stream=True, **options))
    texts, reasons = {}, {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    return texts, reasons, chunks


@pytest.mark.parametrize("modality", [None, *MEDIA])
def test_greedy_answers_equal_model_generate_for_every_modality_streamed_or_not(server, tiny, modality):
    url, _ = server
    modalities = () if modality is None else (modality,)
    answer = ask(url, user_turn("what is it ?", *modalities), max_tokens=6)
    expected = reference_answer(*tiny, user_turn("what is it ?", *modalities, form=1), max_tokens=6)
    assert answer.choices[0].message.content == expected[0]
    texts, reasons, _ = streamed(url, user_turn("what is it ?", *modalities), max_tokens=6)
    assert (texts[0], reasons[0]) == (expected[0], answer.choices[0].finish_reason)
    assert answer.model == MODEL_ID and answer.object == "chat.completion"
    assert answer.usage.completion_tokens <= 6 and answer.usage.prompt_tokens > 0


def test_streaming_gives_the_same_text_as_not_streaming(server):
    url, _ = server
    messages = user_turn("which shape do you see ?", "image", "audio", "point_cloud")
    whole = ask(url, messages, max_tokens=8)
    texts, reasons, chunks = streamed(url, messages, max_tokens=8, stream_options={"include_usage": True})
    assert texts[0] == whole.choices[0].message.content
    assert reasons[0] == whole.choices[0].finish_reason
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) > 1  # it came in pieces


def test_a_system_message_and_earlier_turns_reach_the_prompt(server, tiny):
    url, _ = server
    turns = [
        {"role": "system", "content": "answer in one word"},
        {"role": "user", "content": "what colour is it ?"},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "and the shape ?"},
    ]
    answer = ask(url, turns, max_tokens=5).choices[0].message.content
    assert answer == reference_answer(*tiny, turns, max_tokens=5)[0]


def test_max_tokens_ends_an_answer_with_finish_reason_length(server):
    url, _ = server
    answer = ask(url, user_turn("describe it", "image"), max_tokens=1, temperature=1.0, seed=3)
    assert answer.choices[0].finish_reason in ("length", "stop")
    assert answer.usage.completion_tokens <= 1


def test_a_stop_string_ends_the_answer_before_it_streamed_or_not(server):
    url, _ = server
    messages = user_turn("describe it", "video")
    full = ask(url, messages, max_tokens=12).choices[0].message.content
    words = full.split()
    if len(words) < 3:
        pytest.skip(f"the tiny model's answer is too short to cut: {full!r}")
    stop = " " + words[2]
    cut = full[: full.index(stop)]
    answer = ask(url, messages, max_tokens=12, stop=[stop])
    assert (answer.choices[0].message.content, answer.choices[0].finish_reason) == (cut, "stop")
    texts, reasons, _ = streamed(url, messages, max_tokens=12, stop=stop)
    assert (texts[0], reasons[0]) == (cut, "stop")


def test_sampling_with_a_seed_repeats_and_n_gives_n_choices(server):
    url, _ = server
    messages = user_turn("describe it", "image")
    options = dict(max_tokens=8, temperature=1.5, top_p=0.95, n=3, seed=11)
    first, second = ask(url, messages, **options), ask(url, messages, **options)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.message.content for c in first.choices] == [c.message.content for c in second.choices]
    texts, reasons, _ = streamed(url, messages, **options)
    assert [texts[i] for i in range(3)] == [c.message.content for c in first.choices]


def test_beam_search_answers_equal_model_generate_with_the_same_beams(server, tiny):
    url, _ = server
    answer = ask(
        url, user_turn("what colour is it ?", "image"), max_tokens=5, n=2, extra_body={"num_beams": 3}
    )
    expected = reference_answer(
        *tiny,
        user_turn("what colour is it ?", "image", form=1),
        max_tokens=5,
        num_beams=3,
        num_return_sequences=2,
    )
    assert [choice.message.content for choice in answer.choices] == expected


def test_eight_concurrent_clients_get_their_sequential_answers_in_batches(server):
    url, served = server
    combinations = [
        (),
        ("image",),
        ("audio",),
        ("speech",),
        ("video",),
        ("point_cloud",),
        ("image", "speech"),
    ]
    requests = [
        user_turn(QUESTIONS[(thread + turn) % 4], *combinations[(thread * 4 + turn) % len(combinations)])
        for thread in range(8)
        for turn in range(4)
    ]
    sequential = [ask(url, messages, max_tokens=6).choices[0].message.content for messages in requests]
    before = sum(size * count for size, count in served.scheduler.batch_sizes.items() if size > 1)

    def one_client(thread: int) -> list[str]:
        return [
            ask(url, requests[thread * 4 + turn], max_tokens=6).choices[0].message.content
            for turn in range(4)
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = [answer for answers in pool.map(one_client, range(8)) for answer in answers]
    assert concurrent == sequential
    batched = sum(size * count for size, count in served.scheduler.batch_sizes.items() if size > 1) - before
    assert batched >= 8, served.scheduler.batch_sizes  # many requests did share a generate call


def test_a_failing_request_fails_alone_and_its_batch_neighbours_get_their_answers(tiny):
    model, processor = tiny
    poison = processor.tokenizer.convert_tokens_to_ids("hear")

    class FailsOnHear:
        """The model, except that generating for a batch holding the word `hear` fails."""

        def __getattr__(self, name):
            return getattr(model, name)

        def generate(self, **inputs):
            if (inputs["input_ids"] == poison).any():
                raise RuntimeError("this request breaks generation")
            return model.generate(**inputs)

    with running_server(model, processor, batch_window_seconds=0.3) as (url, served):
        served.scheduler.model = FailsOnHear()
        good = [user_turn(question, "image") for question in QUESTIONS]
        expected = [ask(url, messages, max_tokens=5).choices[0].message.content for messages in good]

        def send(messages):
            try:
                return ask(url, messages, max_tokens=5).choices[0].message.content
            except openai.InternalServerError as error:
                return error

        with ThreadPoolExecutor(max_workers=5) as pool:
            answers = list(pool.map(send, [*good[:2], user_turn("do you hear it ?"), *good[2:]]))
    assert isinstance(answers[2], openai.InternalServerError) and "breaks generation" in str(answers[2])
    assert answers[:2] + answers[3:] == expected
    assert served.scheduler.batch_sizes[1] >= 5  # the failed batch was run again request by request


def test_models_and_health_endpoints_name_the_served_model(server):
    url, _ = server
    assert [model.id for model in client(url).models.list()] == [MODEL_ID]
    assert client(url).models.retrieve(MODEL_ID).id == MODEL_ID
    import urllib.request

    with urllib.request.urlopen(url + "/health", timeout=10) as response:
        assert response.status == 200


def test_an_api_key_lets_its_holder_in(tiny):
    with running_server(*tiny, api_key="sesame") as (url, _):
        assert ask_with_key(url, "sesame").choices[0].message.content is not None
        with pytest.raises(openai.AuthenticationError, match="Missing or wrong API key"):
            ask_with_key(url, "open up")


def ask_with_key(url: str, key: str):
    return client(url, api_key=key).chat.completions.create(
        model=MODEL_ID, messages=user_turn("describe it"), max_tokens=2
    )


def test_files_under_the_media_root_are_served_by_relative_path_and_file_url(tiny, tmp_path):
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "red.png").write_bytes(png_bytes("red"))
    expected = reference_answer(
        *tiny, [{"role": "user", "content": [{"type": "image", "image": png_bytes("red")}]}], max_tokens=4
    )[0]
    with running_server(*tiny, access=MediaAccess(media_root=tmp_path)) as (url, _):
        for reference in ("pictures/red.png", (tmp_path / "pictures" / "red.png").as_uri()):
            part = {"type": "image_url", "image_url": {"url": reference}}
            answer = ask(url, [{"role": "user", "content": [part]}], max_tokens=4)
            assert answer.choices[0].message.content == expected


def test_remote_media_are_fetched_only_with_the_flag(tiny):
    image = png_bytes("blue")

    class OneImage(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server API)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(image)

        def log_message(self, *args):
            pass

    media_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OneImage)
    threading.Thread(target=media_server.serve_forever, daemon=True).start()
    part = {
        "type": "image_url",
        "image_url": {"url": f"http://127.0.0.1:{media_server.server_port}/blue.png"},
    }
    expected = reference_answer(
        *tiny, [{"role": "user", "content": [{"type": "image", "image": image}]}], max_tokens=4
    )[0]
    try:
        with running_server(*tiny, access=MediaAccess(allow_remote_media=True)) as (url, _):
            assert (
                ask(url, [{"role": "user", "content": [part]}], max_tokens=4).choices[0].message.content
                == expected
            )
        with running_server(*tiny) as (url, _):
            status, body = post(url, {"model": MODEL_ID, "messages": [{"role": "user", "content": [part]}]})
            assert status == 400 and "--allow-remote-media" in body["error"]["message"]
    finally:
        media_server.shutdown()


def test_what_conversion_drops_is_reported_to_the_client(server):
    url, _ = server
    transparent = {
        "type": "image_url",
        "image_url": {"url": data_uri("image/png", png_bytes((0, 0, 255, 90), mode="RGBA"))},
    }
    answer = ask(url, [{"role": "user", "content": [transparent]}], max_tokens=2)
    assert any("alpha channel" in note for note in answer.model_extra["warnings"])


def test_limits_are_flags_of_xllm_serve():
    from xllm.cli import build_parser

    args = build_parser().parse_args(
        ["serve", "folder", "--max-image-pixels", "1000", "--max-audio-seconds", "1.5"]
    )
    assert (args.max_image_pixels, args.max_audio_seconds, args.host) == (1000, 1.5, "127.0.0.1")
    assert ServingLimits().max_tokens == args.max_tokens
