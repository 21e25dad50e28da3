"""`xllm evaluate`: batched generation on a manifest, the task's metrics, a JSON and a Markdown report.

The manifest has the training format (`xllm.manifests`), so any training or exported manifest can be
evaluated; `tasks.py` says which columns each task reads. Media paths are confined to the manifest's
folder unless allowed.
"""

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from xllm.manifests import load_manifest

from .tasks import Generate, Rank, Task


@dataclass
class EvaluationResult:
    task: str
    metrics: dict[str, float]
    predictions: list[str]
    generation: dict


def evaluate_examples(
    task: Task,
    examples: list[dict],
    generate: Generate,
    generation_overrides: dict | None = None,
    rank: Rank | None = None,
) -> EvaluationResult:
    """Answer every example (`predict_examples`) and score the answers."""
    predictions, generation = predict_examples(task, examples, generate, generation_overrides, rank)
    return EvaluationResult(task.name, task.score(examples, predictions), predictions, generation)


def predict_examples(
    task: Task,
    examples: list[dict],
    generate: Generate,
    generation_overrides: dict | None = None,
    rank: Rank | None = None,
) -> tuple[list[str], dict]:
    """The answer of every example and the decoding settings used: generation with the task's decoding
    settings (plus overrides) or, for a task of method "likelihood", ranking candidates with `rank` (no
    decoding settings)."""
    if task.method == "likelihood":
        if rank is None:
            raise ValueError(f"Task {task.name!r} ranks candidates by likelihood: pass `rank`, got None.")
        return task.predict(examples, rank, {}), {}
    generation = {**task.generation, **(generation_overrides or {})}
    return task.predict(examples, generate, generation), generation


def load_evaluated_model(
    model_path: str | Path,
    device: str | None = None,
    dtype: str | None = None,
    processor_kwargs: dict | None = None,
):
    """An X-LLM model (eval mode, on `device` or the first accelerator; `dtype` as `from_pretrained` takes
    it, default as saved) and its processor (`processor_kwargs` override its saved options), from a local
    folder."""
    import torch
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    import xllm  # noqa: F401  (registers the X-LLM classes with the Auto classes)

    model_kwargs = {} if dtype is None else {"dtype": dtype}
    model = AutoModelForMultimodalLM.from_pretrained(model_path, **model_kwargs).eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device), AutoProcessor.from_pretrained(model_path, **(processor_kwargs or {}))


def markdown_table(result: EvaluationResult, items: int) -> str:
    lines = [f"# {result.task} ({items} items)", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value:.4f} |" for name, value in result.metrics.items()]
    return "\n".join(lines) + "\n"


def write_evaluation_report(
    result: EvaluationResult,
    examples: list[dict],
    task: Task,
    output_dir: str | Path,
    details: dict,
    markdown: str | None = None,
) -> dict:
    """Write report.json, report.md (`markdown`, else the metrics table) and predictions.jsonl (one line per
    item) to `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "task": result.task,
        "items": len(examples),
        "metrics": result.metrics,
        "method": task.method,
        "generation": result.generation,
        **details,
    }
    (output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / "report.md").write_text(markdown or markdown_table(result, len(examples)))
    with (output_dir / "predictions.jsonl").open("w") as lines:
        for index, (example, prediction) in enumerate(zip(examples, result.predictions, strict=True)):
            item = {
                "id": example.get("id", index),
                "prediction": prediction,
                "reference": task.references(example),
            }
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
    candidates_per_forward: int | None = None,
) -> dict:
    """Evaluate a saved model on a manifest and write the reports; returns the JSON report.
    `allow_outside_root` lets the manifest name media outside its own folder; `candidates_per_forward`
    bounds how many candidates one forward scores (likelihood ranking)."""
    from .generation import generate_answers
    from .likelihood import score_candidates

    examples = list(load_manifest(manifest, allow_outside_root=allow_outside_root, limit=limit, name="data"))
    model, processor = load_evaluated_model(model_path, device)
    generate = partial(generate_answers, model, processor, batch_size=batch_size, progress=progress)
    rank = partial(
        score_candidates,
        model,
        processor,
        batch_size=batch_size,
        candidates_per_forward=candidates_per_forward,
        progress=progress,
    )
    result = evaluate_examples(task, examples, generate, generation_overrides, rank)
    details = {"model": str(model_path), "data": str(manifest)}
    return write_evaluation_report(result, examples, task, output_dir, details)


__all__ = [
    "EvaluationResult",
    "evaluate_examples",
    "load_evaluated_model",
    "predict_examples",
    "run_evaluation",
    "write_evaluation_report",
]
