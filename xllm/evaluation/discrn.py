"""The DisCRn evaluation: which of two inputs of different modalities answers a question.

The published protocol (X-InstructBLIP, arXiv 2311.18799, §5): the LLM prompt starts with an
instruction to answer with the relative position of the input, then each input preceded by its
modality cue (`image: <image> 3d: <point_cloud>`), then `question: ... answer:`; each Q-Former
reads the fixed prompt "a short description" rather than the question; decoding uses 5 beams
and at most 10 new tokens. The prompt is raw text, not the chat template, as published.

The caption baseline replaces each input by a caption the model itself generates (through its
chat template, with the captioning decoding settings) and asks the same question over the two
captions, text only.

Manifest rows have the training format (`xllm.manifests`): a user turn with the two media parts in
question order and the question as its text; the label ("first" or "second") in a `label` column or as
the assistant answer (`xllm discrn build` and `xllm world export` write such rows).
"""

from dataclasses import dataclass, field
from functools import partial

from xllm.manifests import example_answer
from xllm.modeling_xllm.model_modalities import MODALITIES as MODEL_MODALITIES
from xllm.processing.processor_modalities import MODALITIES, placeholder

from .metric_loading import load_metric
from .prompts import ChatPrompt, TextPrompt
from .tasks import (
    CAPTION_INSTRUCTION,
    CAPTIONING_GENERATION,
    SHORT_ANSWER_GENERATION,
    Generate,
    Task,
    prompt_conversation,
)


def published_cues() -> dict[str, str]:
    """The cue word of each modality in the published prompt (`image`, `3d`, ...): its modality cue."""
    return {modality: row.cue.strip().removesuffix(":") for modality, row in MODEL_MODALITIES.items()}


@dataclass(frozen=True)
class DiscrnProtocol:
    """The wording of the DisCRn prompts; the defaults follow the published protocol."""

    prefix: str = (
        "You are given two inputs. Answer the question with the relative position of the input it "
        "refers to: first or second."
    )
    qformer_prompt: str = "a short description"
    caption_instruction: str = CAPTION_INSTRUCTION
    caption_generation: dict = field(default_factory=lambda: dict(CAPTIONING_GENERATION))
    cues: dict[str, str] = field(default_factory=published_cues)

    def text(self, question: str, modalities: tuple[str, str], inputs: tuple[str, str]) -> str:
        """`<prefix> <cue>: <input> <cue>: <input> question: <question> answer:`, inputs being
        placeholders or captions."""
        cued = " ".join(
            f"{self.cues[modality]}: {item}" for modality, item in zip(modalities, inputs, strict=True)
        )
        return f"{self.prefix} {cued} question: {question} answer:"


def question_and_media(example: dict) -> tuple[str, list[tuple[str, object]]]:
    """The question (the user turns' text) and the (modality, item) media in question order."""
    media, texts = [], []
    for message in prompt_conversation(example):
        content = message["content"]
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                media.append((part["type"], part[part["type"]]))
    if len(media) != 2 or media[0][0] == media[1][0]:
        raise ValueError(
            f"A DisCRn example must hold two media of different modalities, example {example.get('id')!r} has "
            f"{[modality for modality, _ in media]}."
        )
    return " ".join(" ".join(texts).split()), media


def discrn_label(example: dict) -> str:
    return example_answer(example, "label")


def media_prompt(example: dict, protocol: DiscrnProtocol) -> TextPrompt:
    """The published DisCRn prompt over the two media of an example."""
    question, media = question_and_media(example)
    modalities = tuple(modality for modality, _ in media)
    text = protocol.text(question, modalities, tuple(placeholder(modality) for modality in modalities))
    keywords = {MODALITIES[modality].keyword: [item] for modality, item in media}
    return TextPrompt(text, keywords, protocol.qformer_prompt)


def answer_from_media(
    examples: list[dict], generate: Generate, generation: dict, protocol: DiscrnProtocol
) -> list[str]:
    return generate([media_prompt(example, protocol) for example in examples], generation)


def caption_prompt(modality: str, item, instruction: str) -> ChatPrompt:
    content = [{"type": modality, modality: item}, {"type": "text", "text": instruction}]
    return ChatPrompt([{"role": "user", "content": content}])


def answer_from_captions(
    examples: list[dict], generate: Generate, generation: dict, protocol: DiscrnProtocol
) -> list[str]:
    """The caption baseline: the model captions each input, then answers from the two captions alone."""
    parsed = [question_and_media(example) for example in examples]
    captions = generate(
        [caption_prompt(m, item, protocol.caption_instruction) for _, media in parsed for m, item in media],
        protocol.caption_generation,
    )
    prompts = []
    for index, (question, media) in enumerate(parsed):
        modalities = tuple(modality for modality, _ in media)
        text = protocol.text(question, modalities, (captions[2 * index], captions[2 * index + 1]))
        prompts.append(TextPrompt(text, {}, protocol.qformer_prompt))
    return generate(prompts, generation)


def score_discrn(examples: list[dict], predictions: list[str]) -> dict[str, float]:
    return load_metric("discrn_accuracy").compute(
        predictions=predictions,
        references=[discrn_label(example) for example in examples],
        modalities=[[modality for modality, _ in question_and_media(example)[1]] for example in examples],
    )


def discrn_task(caption_baseline: bool = False, protocol: DiscrnProtocol | None = None) -> Task:
    """The DisCRn evaluation as a task: from the media, or (`caption_baseline`) from self-made captions."""
    protocol = protocol or DiscrnProtocol()
    answer = answer_from_captions if caption_baseline else answer_from_media
    return Task(
        "discrn_caption_baseline" if caption_baseline else "discrn",
        partial(answer, protocol=protocol),
        score_discrn,
        SHORT_ANSWER_GENERATION,
        discrn_label,
    )


__all__ = ["DiscrnProtocol", "discrn_task", "media_prompt"]
