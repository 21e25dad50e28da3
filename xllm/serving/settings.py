"""The fields of a chat completion request, checked, and split into what a batch must share
(`BatchSettings`: how tokens are chosen) and what each request keeps for itself (`max_tokens`, `stop`,
streaming), so that requests that differ only in the latter still run as one `generate` call.

The request schema is OpenAI's, as transformers serve reads it (`TransformersCompletionCreateParamsStreaming`
is reused for the list of fields); fields that would change the answer and that this server does not
implement (tools, logprobs, response formats, penalties, ...) are refused rather than ignored.
Extension fields: `top_k`, `num_beams`, `repetition_penalty`.
"""

import copy
import math
from dataclasses import dataclass, replace

from transformers import GenerationConfig
from transformers.cli.serving.chat_completion import TransformersCompletionCreateParamsStreaming

from .errors import RequestError
from .limits import ServingLimits

OPENAI_FIELDS = set(TransformersCompletionCreateParamsStreaming.__mutable_keys__)
EXTENSION_FIELDS = {"top_k", "num_beams", "repetition_penalty"}
SUPPORTED_FIELDS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "seed",
    "stop",
    *EXTENSION_FIELDS,
}
# Accepted and ignored: they do not change the answer.
IGNORED_FIELDS = {"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"}
# Refused unless they hold the value that means "off".
NEUTRAL_VALUES = {
    "logprobs": (False,),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "modalities": (["text"],),
    "tools": ([],),
    "parallel_tool_calls": (False, True),
    "tool_choice": ("none",),
}
MAX_STOP_SEQUENCES = 4


@dataclass(frozen=True)
class BatchSettings:
    """How tokens are chosen; requests with equal settings can share a `generate` call. `seed` makes a
    sampled answer reproducible, so seeded requests run alone (see `batch_key`). Beam search is not
    stopped row by row, so beams requests share a batch only with the same `beams_max_tokens`."""

    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    num_beams: int = 1
    n: int = 1
    repetition_penalty: float | None = None
    seed: int | None = None
    beams_max_tokens: int | None = None

    def generation_config(self, base: GenerationConfig, max_new_tokens: int) -> GenerationConfig:
        """The model's generation config with these settings and `max_new_tokens`."""
        config = copy.deepcopy(base)
        fields = {
            "max_new_tokens": max_new_tokens,
            "max_length": None,
            "do_sample": self.do_sample,
            "num_beams": self.num_beams,
            "num_return_sequences": self.n,
        }
        if self.do_sample:
            fields.update(
                {
                    name: value
                    for name, value in (
                        ("temperature", self.temperature),
                        ("top_p", self.top_p),
                        ("top_k", self.top_k),
                    )
                    if value is not None
                }
            )
        if self.repetition_penalty is not None:
            fields["repetition_penalty"] = self.repetition_penalty
        config.update(**fields)
        return config


@dataclass(frozen=True)
class ChatRequest:
    """One checked request: its messages (read later, with their media), settings and own limits."""

    messages: list
    settings: BatchSettings
    max_tokens: int
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False


def read_chat_request(
    body, limits: ServingLimits, served_model: str, default_max_tokens: int, base: GenerationConfig
) -> ChatRequest:
    """A ChatRequest from the JSON body, or a RequestError naming the first wrong field."""
    if not isinstance(body, dict):
        raise RequestError(f"The request body must be a JSON object, got {type(body).__name__}.")
    check_fields(body)
    model = body.get("model")
    if model is not None and model != served_model:
        raise RequestError(
            f"`model` is {model!r}; this server serves {served_model!r}.",
            "model",
            status=404,
            code="model_not_found",
        )
    if "messages" not in body:
        raise RequestError("`messages` is required.", "messages")
    stream = typed(body, "stream", bool, False)
    options = typed(body, "stream_options", dict, {})
    if options and not stream:
        raise RequestError("`stream_options` is only allowed with `stream: true`.", "stream_options")
    include_usage = typed(options, "include_usage", bool, False, prefix="stream_options.")
    settings = read_settings(body, limits, base)
    max_tokens = read_max_tokens(body, limits, default_max_tokens)
    if settings.num_beams > 1:
        if stream:
            raise RequestError(
                "`stream: true` cannot be combined with `num_beams` > 1: beam search only knows its answer at the "
                "end. Ask without streaming, or with num_beams 1.",
                "stream",
            )
        settings = replace(settings, beams_max_tokens=max_tokens)
    return ChatRequest(
        messages=body["messages"],
        settings=settings,
        max_tokens=max_tokens,
        stop=read_stop(body),
        stream=stream,
        include_usage=include_usage,
    )


def check_fields(body: dict) -> None:
    unknown = sorted(set(body) - OPENAI_FIELDS - EXTENSION_FIELDS)
    if unknown:
        raise RequestError(f"Unknown fields in the request: {unknown}.", unknown[0])
    for name in sorted(set(body) - SUPPORTED_FIELDS - IGNORED_FIELDS):
        if body[name] is not None and body[name] not in NEUTRAL_VALUES.get(name, ()):
            raise RequestError(
                f"`{name}` is not supported by this server.", name, code="unsupported_parameter"
            )


def typed(body: dict, name: str, kind: type, default, prefix: str = ""):
    """`body[name]` if it is a `kind` (bools are not numbers here), `default` if absent or null."""
    value = body.get(name)
    if value is None:
        return default
    kinds = (int, float) if kind is float else (kind,)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kinds):
        raise RequestError(
            f"`{prefix}{name}` must be {kind.__name__}, got {type(value).__name__} {value!r:.50}.",
            prefix + name,
        )
    return value


def in_range(name: str, value, low, high, low_inclusive: bool = True) -> None:
    too_low = value < low if low_inclusive else value <= low
    if too_low or value > high or (isinstance(value, float) and not math.isfinite(value)):
        bounds = f"{'[' if low_inclusive else '('}{low}, {high}]"
        raise RequestError(f"`{name}` must be in {bounds}, got {value!r}.", name)


def read_settings(body: dict, limits: ServingLimits, base: GenerationConfig) -> BatchSettings:
    temperature = typed(body, "temperature", float, None)
    top_p = typed(body, "top_p", float, None)
    top_k = typed(body, "top_k", int, None)
    num_beams = typed(body, "num_beams", int, 1)
    n = typed(body, "n", int, 1)
    repetition_penalty = typed(body, "repetition_penalty", float, None)
    seed = typed(body, "seed", int, None)
    for name, value, low, high, inclusive in (
        ("temperature", temperature, 0, 2, True),
        ("top_p", top_p, 0, 1, False),
        ("top_k", top_k, 1, 10**6, True),
        ("num_beams", num_beams, 1, limits.max_beams, True),
        ("n", n, 1, limits.max_choices, True),
        ("repetition_penalty", repetition_penalty, 0, 10, False),
        ("seed", seed, 0, 2**63 - 1, True),
    ):
        if value is not None:
            in_range(name, value, low, high, inclusive)
    if temperature is not None:
        do_sample = temperature > 0
    else:
        do_sample = top_p is not None or top_k is not None or bool(base.do_sample)
    if num_beams > 1 and n > num_beams:
        raise RequestError(f"`n` ({n}) must not exceed `num_beams` ({num_beams}).", "n")
    if n > 1 and not do_sample and num_beams == 1:
        raise RequestError(
            f"`n` is {n} but decoding is greedy, which gives one answer: set `temperature` > 0 to sample, or "
            "`num_beams` >= n.",
            "n",
        )
    return BatchSettings(
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=top_p,
        top_k=top_k,
        num_beams=num_beams,
        n=n,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )


def read_max_tokens(body: dict, limits: ServingLimits, default: int) -> int:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = typed(body, name, int, None)
    if value is None:
        return min(default, limits.max_tokens)
    if not 1 <= value <= limits.max_tokens:
        raise RequestError(
            f"`{name}` must be between 1 and {limits.max_tokens} (--max-tokens), got {value}.",
            name,
            code="max_tokens_too_large" if value > limits.max_tokens else None,
        )
    return value


def read_stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stops, list)
        or not 1 <= len(stops) <= MAX_STOP_SEQUENCES
        or not all(isinstance(item, str) and item for item in stops)
    ):
        raise RequestError(
            f"`stop` must be a non-empty string or a list of 1 to {MAX_STOP_SEQUENCES} non-empty strings, got "
            f"{stop!r:.100}.",
            "stop",
        )
    return tuple(stops)


__all__ = ["BatchSettings", "ChatRequest", "read_chat_request"]
