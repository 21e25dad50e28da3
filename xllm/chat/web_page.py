"""`xllm chat MODEL --web`: a Gradio chat page (`gr.ChatInterface` with a multimodal textbox).

Uploads are offered for the modalities the model has (their file types from the processor's modality
table); speech and sound files look alike, so when the model has both interfaces a control says which
one an audio upload goes to (the choice is remembered per file for the rest of the conversation). The
page streams each answer; its history is the conversation, rebuilt for the model on every turn. Needs the
`web` extra (gradio).
"""

from pathlib import Path

import gradio as gr

from xllm.processing.processor_modalities import MODALITIES

from .session import GenerationSettings, stream_answer

AUDIO_CHOICES = {"speech": "speech", "sound": "audio"}  # what the page says -> the modality


def upload_modalities(modalities: list[str]) -> dict[str, list[str]]:
    """File suffix -> the model's modalities that may read it (audio suffixes: speech and/or audio)."""
    by_suffix: dict[str, list[str]] = {}
    for modality, row in MODALITIES.items():
        if modality in modalities:
            for suffix in row.file_suffixes:
                by_suffix.setdefault(suffix, []).append(modality)
    return by_suffix


class ChatPage:
    """The page's chat function: Gradio's message and history in, the streamed answer out."""

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor
        self.modalities = [m for m in MODALITIES if m in model.config.modalities]
        self.by_suffix = upload_modalities(self.modalities)
        self.audio_of_file: dict[str, str] = {}  # uploaded path -> "speech" or "audio", as chosen when sent

    @property
    def asks_audio_kind(self) -> bool:
        return {"speech", "audio"} <= set(self.modalities)

    def modality_of(self, path: str, audio_kind: str) -> str:
        candidates = self.by_suffix.get(Path(path).suffix.lower())
        if not candidates:
            raise gr.Error(f"{Path(path).name}: this model reads {sorted(self.by_suffix)} files.")
        if len(candidates) == 1:
            return candidates[0]
        return self.audio_of_file.setdefault(path, AUDIO_CHOICES[audio_kind])

    def conversation(self, message: dict, history: list[dict], audio_kind: str) -> list[dict]:
        """The processor's conversation: the page's history, then this message (its files, then its text)."""
        turns = []
        for entry in history:
            parts = self.parts(entry["content"], audio_kind, entry["role"])
            if turns and turns[-1]["role"] == entry["role"]:  # a file and its text arrive as two entries
                turns[-1]["content"].extend(parts)
            else:
                turns.append({"role": entry["role"], "content": parts})
        files = [{"path": path} for path in message.get("files", [])]
        current = self.parts([*files, message.get("text") or ""], audio_kind)
        return [*turns, {"role": "user", "content": current}]

    def parts(self, content, audio_kind: str, role: str = "user") -> list[dict]:
        """Gradio message content (text, a file, or a list of them) -> content parts. A question is written
        after a space, as `xllm chat` writes it; an answer stays as the model gave it."""
        items = content if isinstance(content, (list, tuple)) else [content]
        parts = []
        for item in items:
            text = item if isinstance(item, str) else item.get("text") if isinstance(item, dict) else None
            if isinstance(item, dict) and item.get("type") not in (None, "text"):
                text = None
            if text is not None:
                parts.append({"type": "text", "text": " " + text.strip() if role == "user" else text})
            else:
                path = file_path(item)
                modality = self.modality_of(path, audio_kind)
                parts.append({"type": modality, modality: path})
        return parts

    def respond(self, message: dict, history: list[dict], max_new_tokens: int, sampling: bool, temperature: float,
                audio_kind: str = "speech"):  # fmt: skip
        """Gradio's chat function: yields the answer so far, token by token."""
        settings = GenerationSettings(int(max_new_tokens), bool(sampling), float(temperature))
        conversation = self.conversation(message, history, audio_kind)
        answer = ""
        try:
            for piece in stream_answer(self.model, self.processor, conversation, settings):
                answer += piece
                yield answer
        except ValueError as error:  # an upload that does not decode, a prompt too long
            raise gr.Error(str(error)) from error


def file_path(item) -> str:
    """The path of a file entry of Gradio's history (`{"path"}`, `{"file": {"path"}}` or a component)."""
    if isinstance(item, dict):
        if "path" in item:
            return item["path"]
        if isinstance(item.get("file"), dict):
            return item["file"]["path"]
    for attribute in ("path", "value"):
        value = getattr(item, attribute, None)
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and "path" in value:
            return value["path"]
    raise gr.Error(f"Cannot read the chat entry {item!r:.100}.")


def build_chat_page(model, processor, title: str = "X-LLM", max_new_tokens: int = 64) -> gr.ChatInterface:
    """The Gradio page for `model`: uploads for its modalities, streaming, generation controls (greedy and
    `max_new_tokens` to start with)."""
    page = ChatPage(model, processor)
    controls = [
        gr.Slider(1, 512, value=max_new_tokens, step=1, label="max new tokens"),
        gr.Checkbox(value=False, label="sample (otherwise greedy)"),
        gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="temperature (when sampling)"),
    ]
    if page.asks_audio_kind:
        controls.append(gr.Radio(list(AUDIO_CHOICES), value="speech", label="an audio upload is"))
    textbox = gr.MultimodalTextbox(
        file_types=sorted(page.by_suffix), file_count="multiple", placeholder="Ask, or attach files first"
    )
    return gr.ChatInterface(
        page.respond,
        multimodal=True,
        textbox=textbox,
        additional_inputs=controls,
        title=title,
        description=f"Reads {', '.join(page.modalities)}. Answers stream as they are generated.",
        analytics_enabled=False,
    )


__all__ = ["build_chat_page"]
