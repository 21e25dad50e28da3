"""A conversation with a saved model: media and questions in, answers streamed out, history kept.

The terminal chat holds a `ChatSession`; the web page rebuilds its conversation from the page's history
on every turn and calls `stream_answer` directly. Both give the processor media as files (its loaders read
every form), and stream with transformers' `TextIteratorStreamer` (one conversation, one row).
"""

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TextIteratorStreamer

from xllm.processing.processor_modalities import MODALITIES


@dataclass
class GenerationSettings:
    """What the chat exposes of decoding: greedy by default, as the chat command always was."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs["temperature"] = self.temperature
        return kwargs


def stream_answer(model, processor, conversation: list[dict], settings: GenerationSettings) -> Iterator[str]:
    """The assistant's next answer to `conversation`, piece by piece as `generate` makes its tokens."""
    inputs = processor.apply_chat_template(
        conversation, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt"
    ).to(model.device)
    streamer = TextIteratorStreamer(
        processor.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
    )
    failure = []

    def generate() -> None:
        try:
            with torch.inference_mode():
                model.generate(**inputs, **settings.generate_kwargs(), streamer=streamer)
        except Exception as error:  # noqa: BLE001 (re-raised in the caller's thread below)
            failure.append(error)
            streamer.end()

    thread = threading.Thread(target=generate, name="xllm-chat-generate", daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if failure:
        raise failure[0]


class ChatSession:
    """A multi-turn conversation: `attach` media for the next question, `ask` it, `reset` to start over."""

    def __init__(self, model, processor, settings: GenerationSettings | None = None):
        self.model = model
        self.processor = processor
        self.settings = settings or GenerationSettings()
        self.messages: list[dict] = []
        self.attached: list[dict] = []

    @property
    def modalities(self) -> list[str]:
        """The modalities the model has an interface for, in table order."""
        return [modality for modality in MODALITIES if modality in self.model.config.modalities]

    def attach(self, modality: str, path: str) -> None:
        """Add a media file to the next question; a ValueError says what is wrong with it."""
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; expected one of {self.modalities}.")
        if modality not in self.modalities:
            raise ValueError(f"This model has no {modality} interface; it reads {self.modalities}.")
        if not Path(path).is_file():
            raise ValueError(f"No file {path!r}.")
        self.attached.append({"type": modality, modality: str(path)})

    def ask(self, question: str) -> Iterator[str]:
        """Stream the answer to `question` (with the attached media); both join the history at the end."""
        turn = {"role": "user", "content": [*self.attached, {"type": "text", "text": " " + question.strip()}]}
        pieces = []
        for piece in stream_answer(self.model, self.processor, [*self.messages, turn], self.settings):
            pieces.append(piece)
            yield piece
        self.messages += [turn, {"role": "assistant", "content": "".join(pieces)}]
        self.attached = []

    def reset(self) -> None:
        self.messages, self.attached = [], []


__all__ = ["ChatSession", "GenerationSettings", "stream_answer"]
