"""A running server over the tiny model, requests of every modality, and the answers `generate` gives them."""

import base64
import contextlib
import json
import urllib.error
import urllib.request
import warnings

import openai
import torch
from media_files import cloud, data_uri, mesh_bytes, mp4_bytes, noise_png_bytes, npy_bytes, wav_bytes

from xllm.serving.app import ServedModel, build_app
from xllm.serving.background import serve_in_background
from xllm.serving.limits import ServingLimits
from xllm.serving.media import MediaAccess

MODEL_ID = "tiny-xllm"

# modality -> (OpenAI content part, the processor's part for the same media)
MEDIA = {
    "image": (
        {"type": "image_url", "image_url": {"url": data_uri("image/png", noise_png_bytes(3))}},
        {"type": "image", "image": noise_png_bytes(3)},
    ),
    "video": (
        {"type": "video_url", "video_url": {"url": data_uri("video/mp4", mp4_bytes(5, seed=1))}},
        {"type": "video", "video": mp4_bytes(5, seed=1)},
    ),
    "audio": (
        {
            "type": "input_audio",
            "input_audio": {"data": base64.b64encode(wav_bytes(2.0)).decode(), "format": "wav"},
        },
        {"type": "audio", "audio": wav_bytes(2.0)},
    ),
    "speech": (
        {
            "type": "input_audio",
            "modality": "speech",
            "input_audio": {"data": base64.b64encode(wav_bytes(0.7, 250.0)).decode(), "format": "wav"},
        },
        {"type": "speech", "speech": wav_bytes(0.7, 250.0)},
    ),
    "point_cloud": (
        {"type": "point_cloud_url", "point_cloud_url": {"url": data_uri("model/ply", mesh_bytes("ply"))}},
        {"type": "point_cloud", "point_cloud": mesh_bytes("ply")},
    ),
    "point_cloud_npy": (
        {
            "type": "point_cloud_url",
            "point_cloud_url": {"url": data_uri("application/x-npy", npy_bytes(cloud()))},
        },
        {"type": "point_cloud", "point_cloud": cloud()},
    ),
}
QUESTIONS = ["what colour is it ?", "which shape do you see ?", "how many are there ?", "describe it"]


def user_turn(question: str, *modalities: str, form: int = 0) -> list[dict]:
    """One user message: the media of `modalities` (form 0: OpenAI parts, 1: the processor's), then text."""
    parts = [MEDIA[modality][form] for modality in modalities]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": " " + question}]}]


def reference_answer(model, processor, conversation: list[dict], max_tokens: int, **generate_kwargs) -> str:
    """What `model.generate` answers to the processor's conversation, decoded as the server decodes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs = processor.apply_chat_template(
            conversation, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt"
        )
    generate_kwargs.setdefault("do_sample", False)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_tokens, **generate_kwargs)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [processor.tokenizer.decode(row, skip_special_tokens=True) for row in new_tokens]


@contextlib.contextmanager
def running_server(
    model,
    processor,
    limits: ServingLimits | None = None,
    access: MediaAccess | None = None,
    model_id: str = MODEL_ID,
    **options,
):
    """(base URL, ServedModel) of a server on a free 127.0.0.1 port, stopped on exit."""
    api_key = options.pop("api_key", None)
    served = ServedModel(
        model, processor, model_id, limits or ServingLimits(), access or MediaAccess(), **options
    )
    with serve_in_background(build_app(served, api_key=api_key)) as url:
        yield url, served


def client(url: str, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0, timeout=120)


def post(url: str, body: bytes | dict, headers: dict | None = None) -> tuple[int, dict]:
    """(status, JSON body) of a raw POST to `/v1/chat/completions`, errors included."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
