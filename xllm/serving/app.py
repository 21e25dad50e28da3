"""The OpenAI-compatible app: `/v1/chat/completions` (JSON or server-sent events), `/v1/models`, `/health`.

A request goes: API key -> body (at most `max_request_bytes`) -> JSON -> fields (`settings.py`) -> room
(`max_concurrent_requests`, else 429) -> messages and media (`messages.py`, `media.py`) and the processor,
on one preparing thread -> the batching scheduler (`batching.py`) -> events back to this request only.
Anything refused on the way is an OpenAI-style JSON error with a 4xx status naming the field; the server
keeps serving.

Reused from `transformers serve`: the request schema's field list (`settings.py`), the SSE framing
(`BaseHandler.chunk_to_sse`) and, as there, openai's own response types. Replaced: model loading (it
resolves classes from transformers' own mappings and refuses X-LLM), message conversion (no speech or
point clouds, no limits, and URLs handed on to loaders that fetch and read files), and generation
(its continuous batching is for text-only LLMs; multimodal requests run one at a time).
"""

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from starlette.exceptions import HTTPException
from transformers.cli.serving.utils import BaseHandler

import xllm

from .batching import BatchScheduler, Job
from .errors import RequestError
from .limits import ServingLimits
from .media import MediaAccess
from .messages import ConversationReader
from .settings import ChatRequest, read_chat_request

logger = logging.getLogger(__name__)
PACKAGE_FOLDER = str(Path(xllm.__file__).parent)


class ServedModel:
    """One model behind the API: prepares each request on its own and hands it to the scheduler."""

    def __init__(
        self,
        model,
        processor,
        model_id: str,
        limits: ServingLimits,
        access: MediaAccess,
        default_max_tokens: int = 256,
        max_batch_size: int = 8,
        batch_window_seconds: float = 0.02,
    ):
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.limits = limits
        self.default_max_tokens = default_max_tokens
        self.reader = ConversationReader(
            model.config.modalities, processor.audio_goes_to_speech, access, limits
        )
        self.scheduler = BatchScheduler(model, processor, max_batch_size, batch_window_seconds)
        # One preparing thread: tokenizers are not safe to call from several threads at once.
        self.preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xllm-prepare")
        self.active = 0
        self._active_lock = threading.Lock()

    def admit(self) -> None:
        with self._active_lock:
            if self.active >= self.limits.max_concurrent_requests:
                raise RequestError(
                    f"The server is at its limit of {self.limits.max_concurrent_requests} concurrent requests "
                    "(--max-concurrent-requests); retry later.",
                    status=429,
                    code="too_many_requests",
                )
            self.active += 1

    def release(self) -> None:
        with self._active_lock:
            self.active -= 1

    def prepare(self, request: ChatRequest) -> tuple:
        """(one-sample encoding, warnings the processor gave): media read and checked, chat template applied."""
        conversation = self.reader.conversation(request.messages)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                encoding = self.processor.apply_chat_template(
                    conversation,
                    tokenize=True,
                    return_dict=True,
                    add_generation_prompt=True,
                    return_tensors="pt",
                )
            except (ValueError, TypeError, OSError) as error:
                raise RequestError(f"The messages could not be prepared: {error}", "messages") from error
        # Only the package's own warnings (what conversion dropped): other threads' warnings land here too.
        notes = [str(w.message) for w in caught if str(w.filename).startswith(PACKAGE_FOLDER)]
        for note in notes:
            logger.warning("%s", note)
        return encoding, list(dict.fromkeys(notes))

    def close(self) -> None:
        self.scheduler.close()
        self.preparer.shutdown(wait=False, cancel_futures=True)


def build_app(served: ServedModel, api_key: str | None = None) -> FastAPI:
    """The FastAPI app serving `served`; `api_key` (if given) is required as `Authorization: Bearer KEY`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        served.close()

    app = FastAPI(title="X-LLM", lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(
            RequestError(str(error.detail), status=error.status_code).body(), error.status_code
        )

    @app.exception_handler(Exception)
    async def crashed(request: Request, error: Exception) -> JSONResponse:
        logger.exception("Unexpected error")
        return JSONResponse(RequestError(f"Internal error: {error}", status=500).body(), status_code=500)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
            raise RequestError(
                "Missing or wrong API key: send `Authorization: Bearer <key>`.",
                status=401,
                code="invalid_api_key",
            )

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": served.model_id, "active_requests": served.active}

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        authorize(request)
        return {"object": "list", "data": [model_card(served.model_id)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> dict:
        authorize(request)
        if model_id != served.model_id:
            raise RequestError(f"No model {model_id!r}; this server serves {served.model_id!r}.", status=404)
        return model_card(served.model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        authorize(request)
        body = parse_json(await read_body(request, served.limits.max_request_bytes))
        chat = read_chat_request(
            body, served.limits, served.model_id, served.default_max_tokens, served.model.generation_config
        )
        served.admit()
        try:
            loop = asyncio.get_running_loop()
            encoding, notes = await loop.run_in_executor(served.preparer, served.prepare, chat)
            job = Job(request=chat, encoding=encoding, loop=loop)
            served.scheduler.submit(job)
        except BaseException:
            served.release()
            raise
        reply = Reply(served.model_id, chat, job, int(encoding["attention_mask"].sum()), notes)
        if chat.stream:
            return StreamingResponse(reply.stream(served.release), media_type="text/event-stream")
        try:
            return JSONResponse(await reply.complete())
        finally:
            job.cancelled.set()
            served.release()

    return app


class Reply:
    """The answer to one request, built from its job's events."""

    def __init__(self, model_id: str, chat: ChatRequest, job: Job, prompt_tokens: int, notes: list[str]):
        self.model_id = model_id
        self.chat = chat
        self.job = job
        self.prompt_tokens = prompt_tokens
        self.notes = notes
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    async def events(self):
        """Events until every choice has finished; a failure is raised as its RequestError."""
        open_choices = set(range(self.chat.settings.n))
        while open_choices:
            event = await self.job.events.get()
            if "error" in event:
                raise event["error"]
            if "finish_reason" in event:
                open_choices.discard(event["choice"])
            yield event

    def usage(self, completion_tokens: int) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    async def complete(self) -> dict:
        texts = {choice: [] for choice in range(self.chat.settings.n)}
        finished, completion_tokens = {}, 0
        async for event in self.events():
            if "delta" in event:
                texts[event["choice"]].append(event["delta"])
            else:
                finished[event["choice"]] = event["finish_reason"]
                completion_tokens += event["completion_tokens"]
        choices = [
            {
                "index": choice,
                "message": {"role": "assistant", "content": "".join(parts)},
                "finish_reason": finished[choice],
            }
            for choice, parts in texts.items()
        ]
        completion = ChatCompletion.model_validate(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model_id,
                "choices": choices,
                "usage": self.usage(completion_tokens),
            }
        ).model_dump(exclude_none=True)
        if self.notes:
            completion["warnings"] = self.notes  # an extension field: what the processor dropped
        return completion

    def chunk(self, choices: list[dict], usage: dict | None = None) -> str:
        chunk = ChatCompletionChunk.model_validate(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model_id,
                "choices": choices,
                "usage": usage,
            }
        )
        return BaseHandler.chunk_to_sse(chunk)

    async def stream(self, release):
        """Server-sent events: each choice's role, its text deltas, its finish, usage if asked, `[DONE]`."""
        completion_tokens = 0
        try:
            first = [
                {"index": c, "delta": {"role": "assistant", "content": ""}}
                for c in range(self.chat.settings.n)
            ]
            yield self.chunk(first)
            if self.notes:
                yield f"data: {json.dumps({'id': self.id, 'object': 'warnings', 'warnings': self.notes})}\n\n"
            try:
                async for event in self.events():
                    if "delta" in event:
                        yield self.chunk([{"index": event["choice"], "delta": {"content": event["delta"]}}])
                    else:
                        completion_tokens += event["completion_tokens"]
                        choice = {
                            "index": event["choice"],
                            "delta": {},
                            "finish_reason": event["finish_reason"],
                        }
                        yield self.chunk([choice])
            except RequestError as error:
                yield f"data: {json.dumps(error.body())}\n\n"
                return
            if self.chat.include_usage:
                yield self.chunk([], self.usage(completion_tokens))
            yield "data: [DONE]\n\n"
        finally:  # also when the client went away: its rows stop at the next step
            self.job.cancelled.set()
            release()


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 once it is known to pass `limit` bytes. A body up to twice the limit is read to
    its end (and dropped) first, so that a client still sending it gets the 413 rather than a broken pipe;
    past that the connection is cut."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > 2 * limit:
        raise body_too_large(int(declared), limit)
    body, size = bytearray(), 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            body.extend(chunk)
        elif size > 2 * limit:
            break
    if size > limit:
        raise body_too_large(size, limit)
    return bytes(body)


def body_too_large(size: int, limit: int) -> RequestError:
    return RequestError(
        f"The request body is {size} bytes or more; the limit is {limit} (--max-request-bytes).",
        status=413,
        code="request_too_large",
    )


def parse_json(body: bytes):
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(f"The request body is not valid JSON: {error}.") from error


def model_card(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "x-llm"}


__all__ = ["ServedModel", "build_app"]
