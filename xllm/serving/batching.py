"""The batching scheduler: requests that arrive within a short window and share their `BatchSettings` run
as one left-padded `generate` call, on one thread that owns the model.

Each request was prepared on its own (`XLLMProcessor.apply_chat_template`, so a bad one failed alone,
before it got here); the scheduler pads the prepared requests into one batch (`XLLMProcessor.pad`), gives
every output row its own `ChoiceStream`, and sends each request its events on its own asyncio queue. If a
batch fails before any request in it has received a token, each request is run again alone, so one
request's failure never reaches another's answer.

transformers' continuous batching serves text-only LLMs; for multimodal inputs `transformers serve` runs
requests one at a time, hence this scheduler (static batches, formed per window).
"""

import asyncio
import collections
import copy
import logging
import threading
import time
from dataclasses import dataclass, field

import torch
from transformers import BatchFeature, StoppingCriteriaList

from .errors import RequestError
from .settings import ChatRequest
from .streams import BatchStreamer, ChoiceStream, RowsFinished

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """A prepared request waiting for, or in, a batch. Its events go to `events` on `loop`."""

    request: ChatRequest
    encoding: BatchFeature  # one sample, as `apply_chat_template` made it
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    received_tokens: bool = False

    @property
    def batch_key(self):
        """Jobs with equal keys may share a batch; a seeded job shares with nobody."""
        settings = self.request.settings
        return settings if settings.seed is None else id(self)

    def emit(self, event: dict) -> None:
        """Thread-safe: called from the generation thread."""
        self.received_tokens = self.received_tokens or "delta" in event
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class BatchScheduler:
    """Runs jobs in batches of up to `max_batch_size`, waiting up to `batch_window_seconds` after the first
    job for others to join."""

    def __init__(self, model, processor, max_batch_size: int = 8, batch_window_seconds: float = 0.02):
        if max_batch_size < 1 or batch_window_seconds < 0:
            raise ValueError(
                f"`max_batch_size` must be >= 1 and `batch_window_seconds` >= 0, got {max_batch_size} and "
                f"{batch_window_seconds}."
            )
        self.model = model
        self.processor = processor
        # Decoding happens on this thread while requests are tokenized on another: each has its own tokenizer.
        self.tokenizer = copy.deepcopy(processor.tokenizer)
        self.max_batch_size = max_batch_size
        self.batch_window_seconds = batch_window_seconds
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # batches run, by size
        self._pending: collections.deque[Job] = collections.deque()
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="xllm-generate", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._condition:
            if self._closed:
                raise RequestError("The server is shutting down.", status=503)
            self._pending.append(job)
            self._condition.notify()

    def close(self, timeout: float = 30.0) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join(timeout)

    def _next_batch(self) -> list[Job] | None:
        with self._condition:
            while not self._pending and not self._closed:
                self._condition.wait()
            deadline = time.monotonic() + self.batch_window_seconds
            while not self._closed and len(self._pending) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            if self._closed:
                return None
            key = self._pending[0].batch_key
            batch = [job for job in self._pending if job.batch_key == key][: self.max_batch_size]
            for job in batch:
                self._pending.remove(job)
            return [job for job in batch if not job.cancelled.is_set()]

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._run_isolated(batch)
        with self._condition:
            for job in self._pending:
                job.emit({"error": RequestError("The server is shutting down.", status=503)})

    def _run_isolated(self, jobs: list[Job]) -> None:
        try:
            self._generate(jobs)
        except Exception as error:  # noqa: BLE001 (any failure must reach its clients, not kill the thread)
            if len(jobs) > 1 and not any(job.received_tokens for job in jobs):
                logger.warning(
                    "A batch of %d failed (%s); running its requests one by one.", len(jobs), error
                )
                for job in jobs:
                    self._run_isolated([job])
                return
            logger.exception("Generation failed for %d request(s).", len(jobs))
            failure = (
                RequestError(f"The request could not be answered: {error}", status=400)
                if isinstance(error, (ValueError, TypeError))
                else RequestError(f"Generation failed: {error}", status=500)
            )
            for job in jobs:
                job.emit({"error": failure})

    def _generate(self, jobs: list[Job]) -> None:
        settings = jobs[0].request.settings
        inputs = self.processor.pad([job.encoding for job in jobs], padding_side="left").to(self.model.device)
        rows = [self._row(job, choice) for job in jobs for choice in range(settings.n)]
        config = settings.generation_config(
            self.model.generation_config, max(j.request.max_tokens for j in jobs)
        )
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        self.batch_sizes[len(jobs)] += 1
        with torch.inference_mode():
            if settings.num_beams == 1:
                streamer = BatchStreamer(rows)
                self.model.generate(
                    **inputs,
                    generation_config=config,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([RowsFinished(rows)]),
                )
                streamer.end()
                return
            sequences = self.model.generate(**inputs, generation_config=config)
        for row, tokens in zip(rows, sequences[:, inputs["input_ids"].shape[1] :].tolist(), strict=True):
            for token_id in tokens:
                row.add(token_id)
            row.finish("length")

    def _row(self, job: Job, choice: int) -> ChoiceStream:
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        eos_ids.add(self.tokenizer.eos_token_id)
        return ChoiceStream(
            choice=choice,
            decode=lambda tokens: self.tokenizer.decode(tokens, skip_special_tokens=True),
            emit=job.emit,
            eos_token_ids=eos_ids - {None},
            max_tokens=job.request.max_tokens,
            stop=job.request.stop,
            cancelled=job.cancelled.is_set,
        )


__all__ = ["BatchScheduler", "Job"]
