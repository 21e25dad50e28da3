"""The DisCRn evaluation: which of two inputs of different modalities answers a question.

The published protocol, as LAVIS runs it (`lavis/projects/xinstruct_blip/eval/discrn/*_describe.yaml`,
`Blip2VicunaXInstruct.generate`, `DisCRnDataset.__getitem__` in
`lavis/datasets/datasets/discriminatory_reasoning_datasets.py`):
- the LLM input is the config's `prefix` (audio_video_describe.yaml:74, image_3d_describe.yaml:67: "You
  are given two inputs. Select exactly one of the two by referece to its relative position (first or
  second, left or right) that best answers the question. ", typo and trailing space as published),
  each input's media block, then the prompt `question: {} answer:` (audio_video_describe.yaml:55);
  the media are placeholders here and the processor writes each modality's cue before its block, as
  for any other input of the model, so the cue is never written twice;
- the question is rewritten (discriminatory_reasoning_datasets.py:128): "which entity / object / image /
  audio" becomes "which of the two options", then "audio" and "image" become "object" (all before
  lower-casing, so case-sensitive: a leading "Which entity" stays), a "?" is added (never doubled), and
  the caption processor lower-cases it, turns `.!"()*#:;~` into spaces and keeps
  50 words (`BlipCaptionProcessor.pre_caption`, lavis/processors/blip_processors.py:49-68);
- the modality order is fixed (`shuffle_modalities: False`, audio_video_describe.yaml:120): audio before
  video (:63), image before 3D (image_3d_describe.yaml:56); an example of such a pair given the other
  way round is presented in that order, its label flipped to match;
- each Q-Former reads "a short description" (`special_qformer_input_prompt`, :73) rather than the
  question (`qformer_prompt=None` gives the 13b audio-video config, where that line is commented out
  and the Q-Former reads the LLM prompt);
- decoding: `discrn/audio_video_describe` of the decoding table (5 beams, at most 10 new tokens,
  length penalty -1, repetition penalty 1.5; `decoding.py`);
- scoring: LAVIS's (`lavis_accuracy`: VQA normalisation, then the first accepted answer of the gold
  option found among the prediction's words, `DisCRNTask._report_metrics`, lavis/tasks/vqa.py:476-488)
  beside our strict one (`accuracy`; `metrics/discrn_accuracy`).
The prompt is raw text, not the chat template, as published.

The caption baseline replaces each input by a caption the model itself generates (through its
chat template, with the captioning decoding settings) and asks the same question over the two
captions, text only, written as LAVIS writes it (blip2_vicuna_xinstruct.py:1160: each caption after
its cue word).

Manifest rows have the training format (`xllm.manifests`): a user turn with the two media parts in
question order and the question as its text; the label ("first" or "second") in a `label` column or as
the assistant answer (`xllm discrn build` and `xllm world export` write such rows).
"""

import re
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
    DISCRN_GENERATION,
    Generate,
    Task,
    prompt_conversation,
)

PUBLISHED_PREFIX = (
    "You are given two inputs. Select exactly one of the two by referece to its relative position "
    "(first or second, left or right) that best answers the question. "
)
# The modality pairs of the published configs, in their fixed order.
PUBLISHED_MODALITY_ORDER = (("audio", "video"), ("image", "point_cloud"))
POSITIONS = ("first", "second")
# "which <noun>" rewritten, in LAVIS's order (discriminatory_reasoning_datasets.py:128).
WHICH_REWRITES = ("which entity", "which object", "which image", "which audio")
CAPTION_PUNCTUATION = re.compile(r"([.!\"()*#:;~])")


def published_cues() -> dict[str, str]:
    """The cue word of each modality in the published prompt (`image`, `3d`, ...): its modality cue."""
    return {modality: row.cue.strip().removesuffix(":") for modality, row in MODEL_MODALITIES.items()}


def lavis_question(question: str, max_words: int = 50) -> str:
    """The question as LAVIS's DisCRn dataset gives it to the model (see the module docstring)."""
    for which in WHICH_REWRITES:
        question = question.replace(which, "which of the two options")
    question = f"{question.replace('audio', 'object').replace('image', 'object')}?".replace("??", "?")
    caption = re.sub(r"\s{2,}", " ", CAPTION_PUNCTUATION.sub(" ", question.lower())).rstrip("\n").strip(" ")
    return " ".join(caption.split(" ")[:max_words])


def placeholders(modalities: tuple[str, str]) -> str:
    return " ".join(placeholder(modality) for modality in modalities)


@dataclass(frozen=True)
class DiscrnProtocol:
    """The DisCRn prompts; the defaults are the published protocol (module docstring)."""

    prefix: str = PUBLISHED_PREFIX
    prompt: str = "question: {} answer:"
    rewrite_question: bool = True
    modality_order: tuple[tuple[str, str], ...] = PUBLISHED_MODALITY_ORDER
    qformer_prompt: str | None = "a short description"
    caption_instruction: str = CAPTION_INSTRUCTION
    caption_generation: dict = field(default_factory=lambda: dict(CAPTIONING_GENERATION))
    cues: dict[str, str] = field(default_factory=published_cues)

    def rewritten(self, question: str) -> str:
        return lavis_question(question) if self.rewrite_question else question

    def question(self, question: str) -> str:
        return self.prompt.format(self.rewritten(question))

    def cued_captions(self, modalities: tuple[str, str], captions: tuple[str, str]) -> str:
        return " ".join(
            f"{self.cues[modality]}: {caption}"
            for modality, caption in zip(modalities, captions, strict=True)
        )

    def media_text(self, question: str, modalities: tuple[str, str]) -> str:
        """`<prefix><placeholder> <placeholder> question: ... answer:`: the processor cues each block."""
        return f"{self.prefix}{placeholders(modalities)} {self.question(question)}"

    def formatted_media_text(self, question: str, modalities: tuple[str, str]) -> str:
        """`<placeholder> <placeholder> <question>`, for a processor whose prompt format (e.g. a LAVIS DisCRn
        eval config's) writes the prefix, the template and the cues itself."""
        return f"{placeholders(modalities)} {self.rewritten(question)}"

    def caption_text(self, question: str, modalities: tuple[str, str], captions: tuple[str, str]) -> str:
        """`<prefix> <cue>: <caption> <cue>: <caption> question: ... answer:`, as LAVIS writes it."""
        cued = self.cued_captions(modalities, captions)
        return f"{self.prefix} {cued} {self.question(question)}"

    def formatted_caption_text(
        self, question: str, modalities: tuple[str, str], captions: tuple[str, str]
    ) -> str:
        """`<cue>: <caption> <cue>: <caption> <question>`, for a processor whose prompt format writes the prefix
        and the template itself (it puts this text into the template's `{}`)."""
        return f"{self.cued_captions(modalities, captions)} {self.rewritten(question)}"

    def instruction(self, question: str) -> str:
        return self.qformer_prompt if self.qformer_prompt is not None else self.question(question)


@dataclass(frozen=True)
class DiscrnItem:
    """An example as presented: question, (modality, medium) pairs in presentation order, label."""

    question: str
    media: list[tuple[str, object]]
    label: str

    @property
    def modalities(self) -> tuple[str, str]:
        return tuple(modality for modality, _ in self.media)


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


def presented(example: dict, protocol: DiscrnProtocol) -> DiscrnItem:
    """The example in the protocol's modality order: a published pair given the other way round is
    swapped, and its label ("first" / "second") flipped with it."""
    question, media = question_and_media(example)
    label = discrn_label(example)
    modalities = (media[0][0], media[1][0])
    if modalities[::-1] in protocol.modality_order:
        media = media[::-1]
        position = label.strip().lower()
        if position not in POSITIONS:
            raise ValueError(
                f"To present example {example.get('id')!r} in the order {modalities[::-1]}, its label must be "
                f"one of {POSITIONS}, got {label!r}."
            )
        label = POSITIONS[1 - POSITIONS.index(position)]
    return DiscrnItem(question, media, label)


def media_prompt(example: dict, protocol: DiscrnProtocol) -> TextPrompt:
    """The published DisCRn prompt over the two media of an example."""
    item = presented(example, protocol)
    keywords = {MODALITIES[modality].keyword: [medium] for modality, medium in item.media}
    return TextPrompt(
        protocol.media_text(item.question, item.modalities),
        keywords,
        protocol.instruction(item.question),
        protocol.formatted_media_text(item.question, item.modalities),
    )


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
    items = [presented(example, protocol) for example in examples]
    captions = generate(
        [
            caption_prompt(m, medium, protocol.caption_instruction)
            for item in items
            for m, medium in item.media
        ],
        protocol.caption_generation,
    )
    prompts = []
    for index, item in enumerate(items):
        pair = (captions[2 * index], captions[2 * index + 1])
        text = protocol.caption_text(item.question, item.modalities, pair)
        formatted = protocol.formatted_caption_text(item.question, item.modalities, pair)
        prompts.append(TextPrompt(text, {}, protocol.instruction(item.question), formatted))
    return generate(prompts, generation)


def score_discrn(examples: list[dict], predictions: list[str], protocol: DiscrnProtocol) -> dict[str, float]:
    """Our strict accuracy and invalid rate, and LAVIS's accuracy (`lavis_accuracy`)."""
    items = [presented(example, protocol) for example in examples]
    return load_metric("discrn_accuracy").compute(
        predictions=predictions,
        references=[item.label for item in items],
        modalities=[list(item.modalities) for item in items],
        lavis_scoring=True,
    )


def presented_label(example: dict, protocol: DiscrnProtocol) -> str:
    return presented(example, protocol).label


def discrn_task(caption_baseline: bool = False, protocol: DiscrnProtocol | None = None) -> Task:
    """The DisCRn evaluation as a task: from the media, or (`caption_baseline`) from self-made captions."""
    protocol = protocol or DiscrnProtocol()
    answer = answer_from_captions if caption_baseline else answer_from_media
    return Task(
        "discrn_caption_baseline" if caption_baseline else "discrn",
        partial(answer, protocol=protocol),
        partial(score_discrn, protocol=protocol),
        DISCRN_GENERATION,
        partial(presented_label, protocol=protocol),
    )


__all__ = ["PUBLISHED_PREFIX", "DiscrnProtocol", "discrn_task", "lavis_question", "media_prompt"]
