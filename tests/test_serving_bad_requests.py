"""Every kind of bad request gets a 4xx OpenAI-style JSON error naming the problem, and the server goes on
answering. Payloads are small where a limit other than bytes is tested, so each limit is really reached."""

import base64
import json
import os
import threading
import time
import urllib.request

import pytest
from media_files import (
    data_uri,
    huge_one_colour_png,
    mesh_bytes,
    mp4_bytes,
    png_bytes,
    silent_hour_flac,
    wav_bytes,
)
from serving_helpers import MODEL_ID, post, running_server

from xllm.serving.limits import MIB, ServingLimits
from xllm.serving.media import MediaAccess
from xllm.testing import tiny_model_and_processor

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = ServingLimits(
    max_request_bytes=2 * MIB,
    max_media_bytes=64 * 1024,
    max_image_pixels=1_000_000,
    max_audio_seconds=60.0,
    max_video_frames=40,
    max_media_items=4,
    max_tokens=64,
)


@pytest.fixture(scope="module")
def media_root(tmp_path_factory):
    """A media root with one image, a big file, a symlink pointing out of it, and a secret beside it."""
    folder = tmp_path_factory.mktemp("serving_root")
    root = folder / "media"
    root.mkdir()
    (root / "red.png").write_bytes(png_bytes("red"))
    (root / "big.bin").write_bytes(os.urandom(100 * 1024))
    (folder / "secret.txt").write_text("do not serve")
    (root / "escape.png").symlink_to(folder / "secret.txt")
    return root


@pytest.fixture(scope="module")
def server(tiny, media_root):
    with running_server(
        *tiny, limits=LIMITS, access=MediaAccess(media_root=media_root), api_key=KEY
    ) as running:
        yield running


def request_with(*parts, **fields) -> dict:
    return {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": list(parts)}],
        "max_tokens": 3,
        **fields,
    }


def image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


GOOD = request_with(
    image(data_uri("image/png", png_bytes("green"))), {"type": "text", "text": "what colour ?"}
)

# name -> (body: dict, or raw bytes, or a callable of the media root), headers, status, words the message holds
BAD_REQUESTS = {
    "malformed JSON": (b'{"model": "tiny-xllm", "messages": [', AUTH, 400, "not valid JSON"),
    "body not an object": (b"[1, 2]", AUTH, 400, "must be a JSON object"),
    "unknown field": (
        {**GOOD, "temperture": 0.5},
        AUTH,
        400,
        "Unknown fields in the request: ['temperture']",
    ),
    "unsupported field": ({**GOOD, "tools": [{"type": "function"}]}, AUTH, 400, "`tools` is not supported"),
    "no messages": ({"model": MODEL_ID}, AUTH, 400, "`messages` is required"),
    "empty messages": ({"model": MODEL_ID, "messages": []}, AUTH, 400, "`messages` must be a non-empty list"),
    "message without role": ({"messages": [{"content": "hi"}]}, AUTH, 400, "`messages[0]` has no `role`"),
    "unknown role": (
        {"messages": [{"role": "tool", "content": "42"}]},
        AUTH,
        400,
        "`messages[0].role` is 'tool'",
    ),
    "unknown content type": (
        request_with({"type": "image_file", "image_file": {"file_id": "x"}}),
        AUTH,
        400,
        "`messages[0].content[0].type` is 'image_file'; expected one of",
    ),
    "undecodable base64": (
        request_with(image("data:image/png;base64,@@not base64@@")),
        AUTH,
        400,
        "`messages[0].content[0].image_url.url` is not valid base64",
    ),
    "bytes that are no image": (
        request_with(image(data_uri("image/png", b"GIF89a but not really" * 3))),
        AUTH,
        400,
        "does not decode as an image",
    ),
    "file:///etc/passwd": (
        request_with(image("file:///etc/passwd")),
        AUTH,
        400,
        "resolves outside --media-root",
    ),
    "path outside the media root": (
        request_with(image("../secret.txt")),
        AUTH,
        400,
        "resolves outside --media-root",
    ),
    "symlink out of the media root": (
        request_with(image("escape.png")),
        AUTH,
        400,
        "resolves outside --media-root",
    ),
    "missing file under the media root": (request_with(image("blue.png")), AUTH, 400, "names no file under"),
    "media file over the byte limit": (request_with(image("big.bin")), AUTH, 413, "the limit is 65536"),
    "http URL without --allow-remote-media": (
        request_with(image("http://127.0.0.1:9/cat.png")),
        AUTH,
        400,
        "fetches no remote media",
    ),
    "ftp URL": (request_with(image("ftp://example.com/cat.png")), AUTH, 400, "has URL scheme 'ftp'"),
    "body over the byte limit": (
        request_with({"type": "text", "text": "x" * (3 * MIB)}),
        AUTH,
        413,
        "the limit is 2097152 (--max-request-bytes)",
    ),
    "missing API key": (GOOD, {}, 401, "Missing or wrong API key"),
    "wrong API key": (GOOD, {"Authorization": "Bearer guess"}, 401, "Missing or wrong API key"),
    "max_tokens of 10^9": ({**GOOD, "max_tokens": 10**9}, AUTH, 400, "`max_tokens` must be between 1 and 64"),
    "max_tokens as a string": ({**GOOD, "max_tokens": "5"}, AUTH, 400, "`max_tokens` must be int, got str"),
    "beams with stream=true": (
        {**GOOD, "stream": True, "num_beams": 2},
        AUTH,
        400,
        "`stream: true` cannot be combined with `num_beams`",
    ),
    "temperature out of range": ({**GOOD, "temperature": 5}, AUTH, 400, "`temperature` must be in [0, 2]"),
    "n > 1 with greedy decoding": ({**GOOD, "n": 3}, AUTH, 400, "`n` is 3 but decoding is greedy"),
    "five stop strings": (
        {**GOOD, "stop": list("abcde")},
        AUTH,
        400,
        "`stop` must be a non-empty string or a list",
    ),
    "wrong model name": ({**GOOD, "model": "gpt-4o"}, AUTH, 404, "this server serves 'tiny-xllm'"),
    "20000 x 20000 PNG": (
        request_with(image(data_uri("image/png", huge_one_colour_png()))),
        AUTH,
        400,
        "has 400000000 pixels; the limit is 1000000 (--max-image-pixels)",
    ),
    "2000 x 2000 PNG": (
        request_with(image(data_uri("image/png", huge_one_colour_png(2000)))),
        AUTH,
        400,
        "has 2000x2000 = 4000000 pixels; the limit is 1000000 (--max-image-pixels)",
    ),
    "an hour of silent audio": (
        request_with(
            {
                "type": "input_audio",
                "input_audio": {"data": base64.b64encode(silent_hour_flac()).decode(), "format": "flac"},
            }
        ),
        AUTH,
        400,
        "is 3600.0 s of audio; the limit is 60.0 s (--max-audio-seconds)",
    ),
    "a video over the frame limit": (
        request_with(
            {"type": "video_url", "video_url": {"url": data_uri("video/mp4", mp4_bytes(60, size=16))}}
        ),
        AUTH,
        400,
        "has 60 frames; the limit is 40 (--max-video-frames)",
    ),
    "unknown audio format": (
        request_with(
            {
                "type": "input_audio",
                "input_audio": {"data": base64.b64encode(wav_bytes(0.5)).decode(), "format": "midi"},
            }
        ),
        AUTH,
        400,
        "`messages[0].content[0].input_audio.format` is 'midi'",
    ),
    "audio modality that is neither speech nor audio": (
        request_with(
            {
                "type": "input_audio",
                "modality": "music",
                "input_audio": {"data": base64.b64encode(wav_bytes(0.5)).decode(), "format": "wav"},
            }
        ),
        AUTH,
        400,
        "`messages[0].content[0].modality` is 'music'",
    ),
    "point cloud of no known format": (
        request_with(
            {"type": "point_cloud_url", "point_cloud_url": {"url": data_uri("model/x-unknown", b"\x00" * 64)}}
        ),
        AUTH,
        400,
        "is a point-cloud file of unknown type",
    ),
    "media in an assistant message": (
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [image(data_uri("image/png", png_bytes()))]},
            ]
        },
        AUTH,
        400,
        "is a assistant message with media",
    ),
    "too many media parts": (
        request_with(*[image(data_uri("image/png", png_bytes()))] * 5),
        AUTH,
        400,
        "hold 5 media parts; the limit is 4",
    ),
    "a prompt too long to keep its media": (
        request_with(image(data_uri("image/png", png_bytes())), {"type": "text", "text": "what " * 600}),
        AUTH,
        400,
        "would cut a media placeholder",
    ),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_a_bad_request_gets_a_4xx_json_error_naming_it_and_the_server_goes_on(server, name):
    url, _ = server
    body, headers, status, words = BAD_REQUESTS[name]
    got_status, got = post(url, body, headers)
    assert got_status == status, got
    assert set(got["error"]) == {"message", "type", "param", "code"}
    assert words in got["error"]["message"]
    good_status, good = post(url, GOOD, AUTH)
    assert good_status == 200 and good["choices"][0]["message"]["content"] is not None


def test_unknown_routes_and_methods_are_json_errors(server):
    url, _ = server
    for path, method in (("/v1/completions", "POST"), ("/v1/chat/completions", "GET")):
        request = urllib.request.Request(
            url + path, data=b"{}" if method == "POST" else None, method=method, headers=AUTH
        )
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        assert raised.value.code in (404, 405)
        assert "message" in json.loads(raised.value.read())["error"]


def test_a_modality_the_model_has_no_interface_for_is_refused():
    model, processor = tiny_model_and_processor(point_clouds=False, speech_model_type=None)
    cloud = {"type": "point_cloud_url", "point_cloud_url": {"url": data_uri("model/ply", mesh_bytes("ply"))}}
    speech = {
        "type": "input_audio",
        "modality": "speech",
        "input_audio": {"data": base64.b64encode(wav_bytes(0.5)).decode(), "format": "wav"},
    }
    with running_server(model, processor) as (url, _):
        for part, modality in ((cloud, "point_cloud"), (speech, "speech")):
            status, body = post(url, request_with(part))
            assert status == 400
            assert f"this model has no {modality} interface" in body["error"]["message"]
            assert body["error"]["code"] == "unsupported_modality"
        assert post(url, request_with({"type": "text", "text": "hello"}))[0] == 200


def test_requests_beyond_the_concurrency_limit_get_429_until_there_is_room(tiny):
    model, processor = tiny
    release = threading.Event()

    class HeldModel:
        def __getattr__(self, name):
            return getattr(model, name)

        def generate(self, **inputs):
            release.wait(30)
            return model.generate(**inputs)

    limits = ServingLimits(max_concurrent_requests=1)
    with running_server(model, processor, limits=limits) as (url, served):
        served.scheduler.model = HeldModel()
        first = {}
        thread = threading.Thread(
            target=lambda: first.update(answer=post(url, request_with({"type": "text", "text": "hi"})))
        )
        thread.start()
        deadline = time.monotonic() + 30
        while served.active == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, body = post(url, request_with({"type": "text", "text": "hello"}))
        assert status == 429 and "limit of 1 concurrent requests" in body["error"]["message"]
        release.set()
        thread.join(30)
        assert first["answer"][0] == 200
        assert post(url, request_with({"type": "text", "text": "hello"}))[0] == 200
