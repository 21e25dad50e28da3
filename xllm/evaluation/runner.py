"""`xllm evaluate`: batched generation on a manifest, the task's metrics, a JSON and a Markdown report.

A manifest is a JSONL file, one item per line. Media columns are named by modality (`image`,
`video`; see `MEDIA_LOADERS`) and hold paths relative to the manifest's folder. The other
columns depend on the task:

| task | columns | metrics |
| --- | --- | --- |
| captioning | one media column, `references` (list) or `caption`, optional `prompt` | CIDEr, BLEU-1..4, ROUGE-L |
| vqa | one media column, `question`, `answers` (list) or `answer` | VQA accuracy |
| asr | one media column, `transcript`, optional `prompt` | WER, CER |
| classification | one media column, `label`, optional `prompt` | classification accuracy |
| discrn | two media columns, `first_modality`, `question`, `label` | DisCRn accuracy (see `discrn.py`) |

An optional `id` column is copied into the predictions file. A video is a video file (decoded by
the video processor) or a folder of frame images, taken in name order.

Decoding follows the published X-InstructBLIP settings per task (`TASK_GENERATION`), which any
`generate` keyword can override.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from xllm.evaluation.caption_tokenizer import tokenize_caption
from xllm.evaluation.metric_loading import load_metric
from xllm.processing.processing_xllm import MEDIA_KEYWORDS
from xllm.trainers.data import resolve_media_path

CAPTIONING_GENERATION = {"num_beams": 5, "max_new_tokens": 80, "min_new_tokens": 10}
SHORT_ANSWER_GENERATION = {"num_beams": 5, "max_new_tokens": 10}
TASK_GENERATION = {
    "captioning": CAPTIONING_GENERATION,
    "vqa": SHORT_ANSWER_GENERATION,
    "discrn": SHORT_ANSWER_GENERATION,
    "classification": SHORT_ANSWER_GENERATION,
    "asr": {"num_beams": 5, "max_new_tokens": 128},
}
CAPTION_INSTRUCTION = "A short description."
TRANSCRIPTION_INSTRUCTION = "Transcribe the speech."
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def load_image(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def load_video(path: Path) -> list[Image.Image] | str:
    """A folder of frame images as a list of frames; a video file as its path, for the processor to decode."""
    if path.is_dir():
        frames = sorted(frame for frame in path.iterdir() if frame.suffix.lower() in IMAGE_SUFFIXES)
        if not frames:
            raise ValueError(
                f"video folder must hold frame images ({', '.join(IMAGE_SUFFIXES)}), {path} has none"
            )
        return [load_image(frame) for frame in frames]
    return str(path)


# Modality -> loader of one media file. A modality joins the manifests by adding its loader here.
MEDIA_LOADERS: dict[str, Callable[[Path], object]] = {"image": load_image, "video": load_video}


def read_manifest(path: str | Path, limit: int | None = None, allow_outside_root: bool = False) -> list[dict]:
    """The items of a JSONL manifest (the first `limit` ones), media paths made absolute; paths that
    leave the manifest's folder are refused unless `allow_outside_root`."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of items, got {limit}")
    rows = []
    with path.open() as lines:
        for line in lines:
            if limit is not None and len(rows) == limit:
                break
            if line.strip():
                rows.append(resolve_media_paths(json.loads(line), path.parent.resolve(), allow_outside_root))
    if not rows:
        raise ValueError(f"data must be a JSONL manifest with at least one item, {path} has none")
    return rows


def resolve_media_paths(row: dict, folder: Path, allow_outside_root: bool = False) -> dict:
    return {
        name: Path(resolve_media_path(value, folder, allow_outside_root)) if name in MEDIA_LOADERS else value
        for name, value in row.items()
    }


def media_columns(row: dict) -> list[str]:
    """The modalities of a manifest row, in `MEDIA_LOADERS` order."""
    return [modality for modality in MEDIA_LOADERS if modality in row]


def single_medium(row: dict) -> tuple[str, Path]:
    """(modality, path) of a row that must have exactly one media column."""
    modalities = media_columns(row)
    if len(modalities) != 1:
        raise ValueError(
            f"data rows must have exactly one media column among {list(MEDIA_LOADERS)}, a row has {modalities}"
        )
    return modalities[0], row[modalities[0]]


class Prompt(NamedTuple):
    """One generation request: text with one placeholder per medium, the media in placeholder
    order as (modality, path), and the instruction that instruction-aware Q-Formers read."""

    text: str
    media: tuple[tuple[str, Path], ...]
    instruction: str


@dataclass
class Generator:
    """Batched generation with an X-LLM model and its processor, left-padded, with a progress bar."""

    model: PreTrainedModel
    processor: ProcessorMixin
    batch_size: int = 8
    progress: bool = True

    def chat_prompt(self, media: tuple[tuple[str, Path], ...], instruction: str) -> Prompt:
        """A user turn with the media, then the instruction, in the model's own chat template."""
        content = [{"type": modality} for modality, _ in media] + [{"type": "text", "text": instruction}]
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        return Prompt(text, media, instruction)

    def __call__(self, prompts: list[Prompt], generation: dict) -> list[str]:
        """The generated text of each prompt, stripped."""
        answers = []
        batches = range(0, len(prompts), self.batch_size)
        for start in tqdm(batches, desc="generating", unit="batch", disable=not self.progress):
            answers += self.generate_batch(prompts[start : start + self.batch_size], generation)
        return answers

    @torch.inference_mode()
    def generate_batch(self, prompts: list[Prompt], generation: dict) -> list[str]:
        media = {keyword: [] for keyword in MEDIA_KEYWORDS.values()}
        for prompt in prompts:
            for modality, path in prompt.media:
                media[MEDIA_KEYWORDS[modality]].append(MEDIA_LOADERS[modality](path))
        inputs = self.processor(
            text=[prompt.text for prompt in prompts],
            instructions=[prompt.instruction for prompt in prompts],
            padding_side="left",
            return_tensors="pt",
            **{keyword: items for keyword, items in media.items() if items},
        ).to(self.model.device, dtype=self.model.dtype)
        outputs = self.model.generate(**inputs, **generation)  # (batch, prompt + new tokens)
        new_tokens = outputs[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]


Predict = Callable[[list[dict], Generator, dict], list[str]]
Score = Callable[[list[dict], list[str]], dict[str, float]]


@dataclass(frozen=True)
class Task:
    """What an evaluation task asks the model (`predict`) and how its answers are scored (`score`)."""

    name: str
    predict: Predict
    score: Score
    generation: dict
    references: Callable[[dict], object]


def answer_single_medium(
    rows: list[dict], generate: Generator, generation: dict, instruction: Callable[[dict], str]
) -> list[str]:
    """Ask each row's `instruction` about its one medium, through the chat template."""
    prompts = [generate.chat_prompt((single_medium(row),), instruction(row)) for row in rows]
    return generate(prompts, generation)


def required(row: dict, column: str):
    if column not in row:
        raise ValueError(f"data rows must have a {column!r} column, a row has only {sorted(row)}")
    return row[column]


def list_or_single(row: dict, list_column: str, single_column: str) -> list[str]:
    """A row's references: a list column, or a one-element list from a single-value column."""
    if list_column in row:
        return list(row[list_column])
    return [required(row, single_column)]


def scalar_metrics(results: dict) -> dict[str, float]:
    """Drop per-item lists from a metric's results, keep the numbers."""
    return {name: value for name, value in results.items() if isinstance(value, (int, float))}


def caption_references(row: dict) -> list[str]:
    return list_or_single(row, "references", "caption")


def score_captions(rows: list[dict], predictions: list[str]) -> dict[str, float]:
    references = [caption_references(row) for row in rows]
    scores = {}
    for name in ("cider", "bleu", "rouge_l"):
        scores.update(
            scalar_metrics(load_metric(name).compute(predictions=predictions, references=references))
        )
    return scores


def vqa_references(row: dict) -> list[str]:
    return list_or_single(row, "answers", "answer")


def score_vqa(rows: list[dict], predictions: list[str]) -> dict[str, float]:
    references = [vqa_references(row) for row in rows]
    return scalar_metrics(load_metric("vqa_accuracy").compute(predictions=predictions, references=references))


def transcript_reference(row: dict) -> str:
    return required(row, "transcript")


def score_transcripts(rows: list[dict], predictions: list[str]) -> dict[str, float]:
    """WER and CER after lower-casing and removing punctuation on both sides (the caption tokenizer)."""
    references = [tokenize_caption(transcript_reference(row)) for row in rows]
    hypotheses = [tokenize_caption(prediction) for prediction in predictions]
    scores = {}
    for name in ("wer", "cer"):
        scores.update(load_metric(name).compute(predictions=hypotheses, references=references))
    return scores


def class_names(rows: list[dict]) -> list[str]:
    return sorted({required(row, "label") for row in rows})


def answer_classification(rows: list[dict], generate: Generator, generation: dict) -> list[str]:
    """Ask which class each item is, listing every class of the manifest, unless a row has its own prompt."""
    default_question = f"Which of these is it: {', '.join(class_names(rows))}?"
    return answer_single_medium(rows, generate, generation, lambda row: row.get("prompt", default_question))


def score_classification(rows: list[dict], predictions: list[str]) -> dict[str, float]:
    references = [required(row, "label") for row in rows]
    metric = load_metric("classification_accuracy")
    return metric.compute(predictions=predictions, references=references, class_names=class_names(rows))


TASKS = {
    "captioning": Task(
        "captioning",
        partial(answer_single_medium, instruction=lambda row: row.get("prompt", CAPTION_INSTRUCTION)),
        score_captions,
        CAPTIONING_GENERATION,
        caption_references,
    ),
    "vqa": Task(
        "vqa",
        partial(answer_single_medium, instruction=lambda row: required(row, "question")),
        score_vqa,
        TASK_GENERATION["vqa"],
        vqa_references,
    ),
    "asr": Task(
        "asr",
        partial(answer_single_medium, instruction=lambda row: row.get("prompt", TRANSCRIPTION_INSTRUCTION)),
        score_transcripts,
        TASK_GENERATION["asr"],
        transcript_reference,
    ),
    "classification": Task(
        "classification",
        answer_classification,
        score_classification,
        TASK_GENERATION["classification"],
        lambda row: required(row, "label"),
    ),
}


@dataclass
class EvaluationResult:
    task: str
    metrics: dict[str, float]
    predictions: list[str]
    generation: dict


def evaluate_rows(
    task: Task, rows: list[dict], generate: Generator, generation_overrides: dict | None = None
) -> EvaluationResult:
    """Generate an answer for every row with the task's decoding settings (plus overrides) and score them."""
    generation = {**task.generation, **(generation_overrides or {})}
    predictions = task.predict(rows, generate, generation)
    return EvaluationResult(task.name, task.score(rows, predictions), predictions, generation)


def load_model_and_processor(model_path: str | Path, device: str | None = None):
    """An X-LLM model (eval mode, on `device` or the first accelerator) and its processor, from a local folder."""
    model = AutoModelForImageTextToText.from_pretrained(model_path).eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device), AutoProcessor.from_pretrained(model_path)


def markdown_table(result: EvaluationResult, items: int) -> str:
    lines = [f"# {result.task} ({items} items)", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value:.4f} |" for name, value in result.metrics.items()]
    return "\n".join(lines) + "\n"


def write_report(
    result: EvaluationResult, rows: list[dict], task: Task, output_dir: str | Path, details: dict
) -> dict:
    """Write report.json, report.md and predictions.jsonl (one line per item) to `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "task": result.task,
        "items": len(rows),
        "metrics": result.metrics,
        "generation": result.generation,
        **details,
    }
    (output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / "report.md").write_text(markdown_table(result, len(rows)))
    with (output_dir / "predictions.jsonl").open("w") as lines:
        for index, (row, prediction) in enumerate(zip(rows, result.predictions, strict=True)):
            item = {"id": row.get("id", index), "prediction": prediction, "reference": task.references(row)}
            lines.write(json.dumps(item) + "\n")
    return report


def run_evaluation(
    task: Task,
    model_path: str | Path,
    manifest: str | Path,
    output_dir: str | Path,
    limit: int | None = None,
    batch_size: int = 8,
    generation_overrides: dict | None = None,
    device: str | None = None,
    progress: bool = True,
    allow_outside_root: bool = False,
) -> dict:
    """Evaluate a saved model on a manifest and write the reports; returns the JSON report.
    `allow_outside_root` lets the manifest name media outside its own folder."""
    rows = read_manifest(manifest, limit, allow_outside_root)
    model, processor = load_model_and_processor(model_path, device)
    result = evaluate_rows(
        task, rows, Generator(model, processor, batch_size, progress), generation_overrides
    )
    details = {"model": str(model_path), "data": str(manifest)}
    return write_report(result, rows, task, output_dir, details)
