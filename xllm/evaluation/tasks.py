"""What each evaluation task asks the model and how its answers are scored.

Every task reads manifests of the training format (`xllm.manifests`: media columns by processor
keyword, `messages` or `prompt` / `response`); the other columns it reads:

| task | prompt (default) | references | metrics |
| --- | --- | --- | --- |
| captioning | `prompt` ("A short description.") | `references` (list), else the answer | CIDEr, BLEU-1..4, ROUGE-L |
| vqa | `prompt`: the question | `answers` (list), else the answer | VQA accuracy |
| asr | `prompt` ("Transcribe the speech.") | `transcript`, else the answer | WER, CER |
| classification | `prompt` (lists every class: `classes`, else every label) | `label`, else the answer | classification accuracy |
| classification by likelihood | `prompt` (the same); every class ranked | `label`, else the answer | classification accuracy |
| discrn | the question of the chat (see `discrn.py`) | `label`, else the answer | DisCRn accuracy |

"The answer" is the `response` column or the last assistant turn. The prompt is the example's chat
(its user turns; media first, as in training); an example without a prompt gets the task's default.
Decoding follows X-InstructBLIP's eval config of the task as LAVIS applies it (`decoding.py`; the
config each task takes is `DECODING_CONFIGS`), which any `generate` keyword can override; ASR, an
X-LLM task, keeps X-LLM's beam search with room for a sentence.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from xllm.manifests import example_answer, example_conversation
from xllm.processing.processor_modalities import MODALITIES

from .caption_tokenizer import tokenize_caption
from .decoding import lavis_decoding
from .metric_loading import load_metric
from .prompts import ChatPrompt, Prompt

if TYPE_CHECKING:
    import torch

# The LAVIS eval config whose decoding each task takes by default (rows of `lavis_decoding.json`).
DECODING_CONFIGS = {
    "captioning": "vicuna7b/image/coco_captioning_test",
    "vqa": "vicuna7b/image/okvqa_qa",
    "classification": "vicuna7b/audio/esc50_classification_completion",
    "discrn": "discrn/audio_video_describe",
}
CAPTIONING_GENERATION = lavis_decoding(DECODING_CONFIGS["captioning"])["generation"]
SHORT_ANSWER_GENERATION = lavis_decoding(DECODING_CONFIGS["vqa"])["generation"]
CLASSIFICATION_GENERATION = lavis_decoding(DECODING_CONFIGS["classification"])["generation"]
DISCRN_GENERATION = lavis_decoding(DECODING_CONFIGS["discrn"])["generation"]
TRANSCRIPTION_GENERATION = {"num_beams": 5, "max_new_tokens": 128}
CAPTION_INSTRUCTION = "A short description."
TRANSCRIPTION_INSTRUCTION = "Transcribe the speech."

Generate = Callable[[list[Prompt], dict], list[str]]
# Log-likelihood of each candidate answer after each prompt: (prompts, candidates) (`likelihood.py`).
Rank = Callable[[list[Prompt], list[str]], "torch.Tensor"]


@dataclass(frozen=True)
class Task:
    """What an evaluation task asks the model (`predict`) and how its answers are scored (`score`).

    `method` says what `predict` is given: "generate" (a `Generate` and the decoding settings) or
    "likelihood" (a `Rank`; no decoding)."""

    name: str
    predict: Callable[[list[dict], Generate | Rank, dict], list[str]]
    score: Callable[[list[dict], list[str]], dict[str, float]]
    generation: dict
    references: Callable[[dict], object]
    method: str = "generate"


def prompt_conversation(example: dict, default_instruction: str | None = None) -> list[dict]:
    """The example's chat without its answer, its media filled in; `default_instruction` stands in for
    a missing prompt."""
    if example.get("messages") is None and example.get("prompt") is None:
        if default_instruction is None:
            raise ValueError(f"An example of this task needs `messages` or `prompt`; got {sorted(example)}.")
        example = {**example, "prompt": default_instruction}
    if example.get("messages") is None:
        example = {**example, "response": example.get("response") or ""}
    conversation = example_conversation(example)
    while conversation and conversation[-1]["role"] == "assistant":
        conversation = conversation[:-1]
    return conversation


def answer_each(
    examples: list[dict], generate: Generate, generation: dict, default_instruction: str | None
) -> list[str]:
    """Ask each example its prompt about its media."""
    return generate([ChatPrompt(media_conversation(e, default_instruction)) for e in examples], generation)


def media_conversation(example: dict, default_instruction: str | None) -> list[dict]:
    """`prompt_conversation`, refused for an example without media: these tasks ask about its media."""
    conversation = prompt_conversation(example, default_instruction)
    parts = [
        part
        for message in conversation
        if isinstance(message["content"], list)
        for part in message["content"]
    ]
    if not any(part["type"] != "text" for part in parts):
        keywords = [row.keyword for row in MODALITIES.values()]
        raise ValueError(
            f"An example of this task needs a media column among {keywords}; example {example.get('id')!r} has "
            f"columns {sorted(example)}."
        )
    return conversation


def references_or_answer(example: dict, column: str) -> list[str]:
    """A list column of references, or the example's answer as the only one."""
    if example.get(column) is not None:
        return list(example[column])
    return [example_answer(example)]


def scalar_metrics(results: dict) -> dict[str, float]:
    """Drop per-item lists from a metric's results, keep the numbers."""
    return {name: value for name, value in results.items() if isinstance(value, (int, float))}


def caption_references(example: dict) -> list[str]:
    return references_or_answer(example, "references")


def score_captions(examples: list[dict], predictions: list[str]) -> dict[str, float]:
    references = [caption_references(example) for example in examples]
    scores = {}
    for name in ("cider", "bleu", "rouge_l"):
        scores.update(
            scalar_metrics(load_metric(name).compute(predictions=predictions, references=references))
        )
    return scores


def vqa_references(example: dict) -> list[str]:
    return references_or_answer(example, "answers")


def score_vqa(examples: list[dict], predictions: list[str]) -> dict[str, float]:
    references = [vqa_references(example) for example in examples]
    return scalar_metrics(load_metric("vqa_accuracy").compute(predictions=predictions, references=references))


def transcript_reference(example: dict) -> str:
    return example_answer(example, "transcript")


def score_transcripts(examples: list[dict], predictions: list[str]) -> dict[str, float]:
    """WER and CER after lower-casing and removing punctuation on both sides (the caption tokenizer)."""
    references = [tokenize_caption(transcript_reference(example)) for example in examples]
    hypotheses = [tokenize_caption(prediction) for prediction in predictions]
    scores = {}
    for name in ("wer", "cer"):
        scores.update(load_metric(name).compute(predictions=hypotheses, references=references))
    return scores


def class_label(example: dict) -> str:
    return example_answer(example, "label")


def class_names(examples: list[dict]) -> list[str]:
    """The benchmark's classes where the examples carry them (`classes`, in its order: a `--limit` run still
    asks over all of them), else every label of the examples, sorted."""
    if examples and examples[0].get("classes") is not None:
        return list(examples[0]["classes"])
    return sorted({class_label(example) for example in examples})


def answer_classification(examples: list[dict], generate: Generate, generation: dict) -> list[str]:
    """Ask which class each item is, listing every class of the manifest, unless it has its own prompt."""
    return generate(classification_prompts(examples), generation)


def classification_prompts(examples: list[dict]) -> list[ChatPrompt]:
    question = f"Which of these is it: {', '.join(class_names(examples))}?"
    return [ChatPrompt(media_conversation(example, question)) for example in examples]


def rank_classification(examples: list[dict], rank: Rank, generation: dict) -> list[str]:
    """The class of highest log-likelihood after the same prompt as `answer_classification` (LAVIS
    `_predict_class`); `generation` is unused: nothing is generated."""
    from .likelihood import ranked_choice

    names = class_names(examples)
    return ranked_choice(rank(classification_prompts(examples), names), names)


def score_classification(examples: list[dict], predictions: list[str]) -> dict[str, float]:
    references = [class_label(example) for example in examples]
    metric = load_metric("classification_accuracy")
    return metric.compute(predictions=predictions, references=references, class_names=class_names(examples))


TASKS = {
    "captioning": Task(
        "captioning",
        partial(answer_each, default_instruction=CAPTION_INSTRUCTION),
        score_captions,
        CAPTIONING_GENERATION,
        caption_references,
    ),
    "vqa": Task(
        "vqa",
        partial(answer_each, default_instruction=None),
        score_vqa,
        SHORT_ANSWER_GENERATION,
        vqa_references,
    ),
    "asr": Task(
        "asr",
        partial(answer_each, default_instruction=TRANSCRIPTION_INSTRUCTION),
        score_transcripts,
        TRANSCRIPTION_GENERATION,
        transcript_reference,
    ),
    "classification": Task(
        "classification", answer_classification, score_classification, CLASSIFICATION_GENERATION, class_label
    ),
}
# Classification without generating: `xllm evaluate --task classification --classify-by likelihood`.
LIKELIHOOD_CLASSIFICATION = Task(
    "classification", rank_classification, score_classification, {}, class_label, method="likelihood"
)
# Every task `xllm evaluate --task` takes: these and DisCRn (`discrn.py`).
TASK_NAMES = (*TASKS, "discrn")

__all__ = [
    "CAPTIONING_GENERATION",
    "DECODING_CONFIGS",
    "LIKELIHOOD_CLASSIFICATION",
    "SHORT_ANSWER_GENERATION",
    "TASKS",
    "TASK_NAMES",
    "Rank",
    "Task",
    "prompt_conversation",
]
