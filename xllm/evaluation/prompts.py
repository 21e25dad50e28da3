"""The two kinds of generation prompt (see `generation.py`)."""

from typing import NamedTuple


class ChatPrompt(NamedTuple):
    """A conversation with its media in the content parts, rendered by the processor's chat template;
    the Q-Formers read the text of its user turns."""

    conversation: list[dict]


class TextPrompt(NamedTuple):
    """Raw text with placeholders (the published DisCRn protocol only), the media by processor keyword in
    placeholder order, and the instruction the Q-Formers read.

    `formatted_text` is what a processor whose prompt format writes the prefix, the template and the Q-Former
    text itself (`lavis`, `x-llm`; `prompt_formats_xllm.py`) is given instead: the placeholders and the
    question only, so that nothing is written twice."""

    text: str
    media: dict[str, list]
    instruction: str
    formatted_text: str | None = None


Prompt = ChatPrompt | TextPrompt

__all__ = ["ChatPrompt", "Prompt", "TextPrompt"]
