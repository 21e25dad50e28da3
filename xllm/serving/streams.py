"""Per-request streams out of one batched `generate` call.

transformers' `TextIteratorStreamer` takes one row only; here each output row of a batch (a request's
choice) is a `ChoiceStream` that decodes its own tokens, holds back what could still become a stop string
or an unfinished character, and ends at its EOS, at its own `max_tokens`, at a stop string, or when its
client goes away. `BatchStreamer` splits each step's tokens into the rows, and `RowsFinished` tells
`generate` which rows are done, so a batch stops as soon as every request in it has its answer.
"""

from collections.abc import Callable

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

REPLACEMENT_CHARACTER = "\ufffd"  # what decoding gives for the first bytes of an unfinished character


class ChoiceStream:
    """One choice of one request: `emit` receives `{"choice", "delta"}` and, at the end,
    `{"choice", "finish_reason", "completion_tokens"}`."""

    def __init__(
        self,
        choice: int,
        decode: Callable[[list[int]], str],
        emit: Callable[[dict], None],
        eos_token_ids: set[int],
        max_tokens: int,
        stop: tuple[str, ...] = (),
        cancelled: Callable[[], bool] = lambda: False,
    ):
        self.choice = choice
        self.decode = decode
        self.emit = emit
        self.eos_token_ids = eos_token_ids
        self.max_tokens = max_tokens
        self.stop = stop
        self.cancelled = cancelled
        self.tokens: list[int] = []
        self.text = ""  # the answer so far (final once finished)
        self.sent = 0  # characters of `text` already emitted
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.cancelled()

    def add(self, token_id: int) -> None:
        """One generated token; ignored once the choice is done (the batch goes on for other rows)."""
        if self.done:
            return
        if token_id in self.eos_token_ids:
            self.finish("stop")
            return
        self.tokens.append(token_id)
        self.text = self.decode(self.tokens)
        stop_at = min((self.text.find(s) for s in self.stop if s in self.text), default=-1)
        if stop_at >= 0:
            self.text = self.text[:stop_at]
            self.finish("stop")
        elif len(self.tokens) >= self.max_tokens:
            self.finish("length")
        else:
            self._send(self._safe_end())

    def finish(self, reason: str) -> None:
        if self.finish_reason is not None:
            return
        self.finish_reason = reason
        self._send(len(self.text))
        self.emit({"choice": self.choice, "finish_reason": reason, "completion_tokens": len(self.tokens)})

    def _safe_end(self) -> int:
        """How much of `text` can be sent: not a trailing unfinished character, nor an end that may still
        grow into a stop string."""
        end = len(self.text.rstrip(REPLACEMENT_CHARACTER))
        held = 0
        for stop in self.stop:
            for length in range(min(len(stop) - 1, end), 0, -1):
                if self.text[:end].endswith(stop[:length]):
                    held = max(held, length)
                    break
        return end - held

    def _send(self, end: int) -> None:
        if end > self.sent:
            self.emit({"choice": self.choice, "delta": self.text[self.sent : end]})
            self.sent = end


class BatchStreamer(BaseStreamer):
    """Feeds each row of a batch its tokens as `generate` makes them (row `i` is `rows[i]`)."""

    def __init__(self, rows: list[ChoiceStream]):
        self.rows = rows
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # `generate` first puts the prompt
            self.prompt_seen = True
            return
        for row, token_id in zip(self.rows, value.reshape(len(self.rows)).tolist(), strict=True):
            row.add(token_id)

    def end(self) -> None:
        """Rows still open when `generate` stops have used the batch's whole budget: their own."""
        for row in self.rows:
            row.finish("length")


class RowsFinished(StoppingCriteria):
    """Stops each row of the batch when its choice is done."""

    def __init__(self, rows: list[ChoiceStream]):
        self.rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.tensor([row.done for row in self.rows], device=input_ids.device)


__all__ = ["BatchStreamer", "ChoiceStream", "RowsFinished"]
