"""`xllm evaluate --benchmark NAME`: a published benchmark's items through a saved model, with failures per
item, a resume cache and reports beside the papers' figures.

1. The benchmark's importer reads its annotation files into rows (`benchmark.py`); `--limit N` keeps the
   first N (the report says `partial`).
2. Items are taken in chunks of `batch_size`, always the same chunks of the full item list. Each item's
   media are decoded as manifests decode them (the modality's `datasets` feature, video frames as
   `xllm.manifests.decoded_media` gives them) or by the benchmark's own `decode`; an item whose file is
   missing or does not decode is failed, with its reason, and the rest of its chunk runs.
3. A chunk's answers (generation, or likelihood ranking for classification: `runner.predict_examples`) are
   appended to `OUTPUT/cache.jsonl` as soon as they exist: one line per finished item, keyed by `id`, after
   a first line with the settings that made them. A run that finds the cache skips its finished items
   (an interrupted run resumes where it stopped); a cache made with other settings is refused. Failed items
   are not cached: a fixed file is tried again.
4. The task scores the items that ran (`tasks.py`); proportions get a 95% Wilson score interval;
   `report.json`, `report.md` and `predictions.jsonl` are written (`runner.write_evaluation_report`).

When no item's media file exists, `--media-dir` is the wrong root: that stops with an error naming the
first file looked for and the benchmark's naming convention.
"""

import json
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from xllm.processing.processor_modalities import MODALITIES

from ..decoding import lavis_decoding, lavis_decoding_table
from ..runner import EvaluationResult, predict_examples, write_evaluation_report
from ..tasks import LIKELIHOOD_CLASSIFICATION, TASKS, Task
from .benchmark import Benchmark, ImportOptions
from .published import NONE, published_figure

CACHE_NAME = "cache.jsonl"
# Metrics that are a mean of per-item 0/1 outcomes (VQA accuracy: of per-item scores in [0, 1]).
PROPORTIONS = ("vqa_accuracy", "accuracy", "lavis_accuracy")
NOT_PROVIDED = {
    "captioning": {"meteor": "not provided (need Java)", "spice": "not provided (need Java)"},
}
INTERVAL_METHOD = (
    "Wilson score interval, 95% (z = 1.96), over the scored items; exact in kind for 0/1 outcomes (top-1, "
    "DisCRn), an approximation for VQA accuracy, whose per-item score takes values between 0 and 1"
)


@dataclass
class BenchmarkRun:
    """What `run_benchmark` is asked: the benchmark, its files, the model and the settings."""

    benchmark: Benchmark
    annotations: Path
    media_dir: Path
    model: Path
    output_dir: Path
    preset: str | None = None
    limit: int | None = None
    options: ImportOptions = field(default_factory=ImportOptions)
    batch_size: int = 8
    decoding: str | None = None  # a decoding table row or yaml, instead of the benchmark's
    generation_overrides: dict = field(default_factory=dict)
    classify_by: str | None = None
    caption_baseline: bool = False
    candidates_per_forward: int | None = None
    device: str | None = None
    progress: bool = True


def benchmark_task(benchmark: Benchmark, classify_by: str | None, caption_baseline: bool) -> Task:
    """The task that asks and scores the benchmark: its own, classification by the benchmark's rule unless
    `classify_by` says otherwise."""
    from ..discrn import discrn_task

    if caption_baseline and benchmark.task != "discrn":
        raise ValueError(f"--caption-baseline applies to DisCRn benchmarks only, got {benchmark.name!r}.")
    if classify_by is not None and benchmark.task != "classification":
        raise ValueError(f"--classify-by applies to classification benchmarks only, got {benchmark.name!r}.")
    if benchmark.task == "discrn":
        return discrn_task(caption_baseline)
    if benchmark.task == "classification" and (classify_by or benchmark.classify_by) == "likelihood":
        return LIKELIHOOD_CLASSIFICATION
    return TASKS[benchmark.task]


def benchmark_decoding(benchmark: Benchmark, preset: str | None, decoding: str | None) -> str | None:
    """The decoding table row the run takes: `decoding` if given, else the benchmark's LAVIS eval config, its
    13b config for the 13b preset where LAVIS has one."""
    if decoding is not None:
        return decoding
    name = benchmark.decoding
    if name and preset == "x-instructblip-13b":
        larger = name.replace("vicuna7b/", "vicuna13b/", 1)
        if larger in lavis_decoding_table():
            return larger
    return name


def take_eval_config_inputs(processor, decoding: dict | None) -> bool:
    """Give a processor of the `lavis` prompt format the input the benchmark's LAVIS eval config builds (its
    prompt, prefix and Q-Former text, video frames, audio windows: the decoding row's `inputs`), as LAVIS
    evaluates that benchmark; processors of other formats keep their own. Returns whether it changed."""
    inputs = (decoding or {}).get("inputs") or {}
    if processor.prompt_format.get("name") != "lavis" or "prompt_format" not in inputs:
        return False
    processor.prompt_format = dict(inputs["prompt_format"])
    if inputs["num_video_frames"]:
        processor.video_processor.num_frames = inputs["num_video_frames"]
    if inputs["num_audio_windows"]:
        processor.audio_feature_extractor.num_windows = inputs["num_audio_windows"]
    return True


def wilson_interval(proportion: float, count: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion observed over `count` items."""
    denominator = 1 + z * z / count
    centre = (proportion + z * z / (2 * count)) / denominator
    half = z * math.sqrt(proportion * (1 - proportion) / count + z * z / (4 * count * count)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def media_items(row: dict) -> dict[str, list[str]]:
    """The media paths of a row by processor keyword."""
    items = {}
    for modality in MODALITIES.values():
        value = row.get(modality.keyword)
        if value is not None:
            items[modality.keyword] = list(value) if isinstance(value, list) else [value]
    return items


def check_media_root(rows: list[dict], run: BenchmarkRun) -> None:
    """Stop when not one item's media file exists under `--media-dir`: the root, not the items, is wrong."""
    if not run.media_dir.is_dir():
        raise ValueError(
            f"--media-dir {str(run.media_dir)!r} is not a folder; expected {run.benchmark.media}."
        )
    paths = [path for row in rows for paths in media_items(row).values() for path in paths]
    media_file = run.benchmark.media_file or str  # the file a path reads (`file.dat::index` -> `file.dat`)
    if paths and not any(Path(media_file(path)).is_file() for path in paths):
        raise ValueError(
            f"--media-dir {str(run.media_dir)!r} holds none of the {len(paths)} media files of {run.benchmark.name} "
            f"(the first looked for: {paths[0]}); expected {run.benchmark.media}."
        )


class MediaFailure(Exception):
    """An item's media file is missing or does not decode; the message is the report's reason."""


def decoder(keyword: str, run: BenchmarkRun):
    """path -> the item the processor takes, for one media column."""
    if run.benchmark.decode is not None:
        return partial(run.benchmark.decode, options=run.options)
    import datasets

    from xllm.manifests import decoded_media

    modality = next(row for row in MODALITIES.values() if row.keyword == keyword)
    feature = getattr(datasets, modality.datasets_feature)()
    return lambda path: decoded_media(feature.decode_example({"path": path, "bytes": None}))


def decoded_row(row: dict, decoders: dict, media_file=str) -> dict:
    """The row with its media decoded; a `MediaFailure` names the file and what went wrong. `media_file` gives
    the file a media path reads (`Benchmark.media_file`)."""
    decoded = dict(row)
    for keyword, paths in media_items(row).items():
        items = []
        for path in paths:
            if not Path(media_file(path)).is_file():
                raise MediaFailure(f"missing file {path}")
            try:
                items.append(decoders[keyword](path))
            except Exception as error:  # every decoder raises its own kinds for unreadable files
                raise MediaFailure(f"cannot decode {path}: {type(error).__name__}: {error}") from error
        decoded[keyword] = items if isinstance(row[keyword], list) else items[0]
    return decoded


def read_cache(path: Path, settings: dict) -> dict[str, str]:
    """Finished items (id -> prediction) of a cache made with `settings`; another cache is refused."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return {}
    made_with = json.loads(lines[0]).get("settings")
    if made_with != settings:
        differing = sorted(
            k for k in {*settings, *(made_with or {})} if (made_with or {}).get(k) != settings.get(k)
        )
        raise ValueError(
            f"{path} was made with other settings (differing: {differing}); delete it to start over, or choose "
            "another --output."
        )
    finished = {}
    for line in lines[1:]:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short when the run was killed: that item runs again
        finished[item["id"]] = item["prediction"]
    return finished


def run_settings(run: BenchmarkRun, task: Task, generation: dict, processor) -> dict:
    """What the predictions depend on: a cache is reused only under the same."""
    return {
        "benchmark": run.benchmark.name,
        "model": str(run.model.resolve()),
        "task": task.name,
        "method": task.method,
        "generation": generation,
        "prompt_format": getattr(processor, "prompt_format", {"name": "parts"}),
        "caption_baseline": run.caption_baseline,
    }


def predict_benchmark(
    run: BenchmarkRun, rows: list[dict], answer, cache_path: Path, finished: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Predictions (id -> answer, the cache's included) and failures (id -> reason) of every row, chunk by
    chunk, each chunk's answers appended to the cache as soon as they exist."""
    from tqdm.auto import tqdm

    decoders = {keyword: decoder(keyword, run) for keyword in {k for row in rows for k in media_items(row)}}
    predictions, failures = dict(finished), {}
    bar = tqdm(
        total=len(rows),
        initial=sum(row["id"] in finished for row in rows),
        desc=run.benchmark.name,
        unit="item",
        disable=not run.progress,
    )
    ends_cut_short = cache_path.read_bytes()[-1:] not in (b"", b"\n")
    with cache_path.open("a", encoding="utf-8") as cache:
        if ends_cut_short:  # a line cut short by a killed run stays a line of its own (`read_cache` skips it)
            cache.write("\n")
        for start in range(0, len(rows), run.batch_size):
            pending = [row for row in rows[start : start + run.batch_size] if row["id"] not in predictions]
            examples = []
            for row in pending:
                try:
                    examples.append(decoded_row(row, decoders, run.benchmark.media_file or str))
                except MediaFailure as failure:
                    failures[row["id"]] = str(failure)
            if examples:
                for example, prediction in zip(examples, answer(examples), strict=True):
                    predictions[example["id"]] = prediction
                    cache.write(json.dumps({"id": example["id"], "prediction": prediction}) + "\n")
                cache.flush()
            bar.update(len(pending))
    bar.close()
    return predictions, failures


def metric_intervals(metrics: dict[str, float], count: int) -> dict[str, dict]:
    return {
        name: dict(zip(("low", "high"), wilson_interval(value, count), strict=True))
        for name, value in metrics.items()
        if name in PROPORTIONS and count > 0
    }


def run_benchmark(run: BenchmarkRun) -> dict:
    """Evaluate a saved model on a published benchmark and write the reports; returns the JSON report."""
    from ..generation import generate_answers
    from ..likelihood import score_candidates
    from ..runner import load_evaluated_model

    benchmark = run.benchmark
    task = benchmark_task(benchmark, run.classify_by, run.caption_baseline)
    if run.limit is not None and run.limit < 1:
        raise ValueError(f"--limit must be a positive number of items, got {run.limit}.")
    rows = benchmark.read(run.annotations, run.media_dir, run.options)
    ids = [row["id"] for row in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"The importer of {benchmark.name} gave duplicate ids; ids must be unique per item.")
    total = len(rows)
    rows = rows[: run.limit] if run.limit is not None else rows
    check_media_root(rows, run)

    decoding_name = benchmark_decoding(benchmark, run.preset, run.decoding)
    decoding = lavis_decoding(decoding_name) if decoding_name else None
    overrides = {**(decoding["generation"] if decoding else {}), **run.generation_overrides}
    model, processor = load_evaluated_model(run.model, run.device)
    inputs_from = decoding_name if take_eval_config_inputs(processor, decoding) else None
    generate = partial(generate_answers, model, processor, batch_size=run.batch_size, progress=False)
    rank = partial(
        score_candidates,
        model,
        processor,
        batch_size=run.batch_size,
        candidates_per_forward=run.candidates_per_forward,
        progress=False,
    )
    generation = {} if task.method == "likelihood" else {**task.generation, **overrides}
    settings = run_settings(run, task, generation, processor)
    run.output_dir.mkdir(parents=True, exist_ok=True)
    cache_path = run.output_dir / CACHE_NAME
    finished = read_cache(cache_path, settings)
    if not finished:
        cache_path.write_text(json.dumps({"settings": settings}) + "\n", encoding="utf-8")

    def answer(examples: list[dict]) -> list[str]:
        return predict_examples(task, examples, generate, overrides, rank)[0]

    predictions, failures = predict_benchmark(run, rows, answer, cache_path, finished)
    scored = [row for row in rows if row["id"] in predictions]
    answers = [predictions[row["id"]] for row in scored]
    metrics = task.score(scored, answers) if scored else {}
    result = EvaluationResult(task.name, metrics, answers, generation)
    figure = published_figure(benchmark.name, run.preset)
    if figure["metric"] in metrics:  # ours as the papers print it: percent, CIDEr x 100
        figure = {**figure, "ours": round(100 * metrics[figure["metric"]], 2)}
    details = {
        "benchmark": benchmark.name,
        "modality": benchmark.modality,
        "items": len(rows),
        "scored": len(scored),
        "failed": len(failures),
        "failures": [
            {"id": row["id"], "reason": failures[row["id"]]} for row in rows if row["id"] in failures
        ],
        "partial": len(rows) < total,
        "total_items": total,
        "intervals": metric_intervals(metrics, len(scored)),
        "interval_method": INTERVAL_METHOD,
        "not_provided": NOT_PROVIDED.get(task.name, {}),
        "settings": {
            "prompt_format": settings["prompt_format"],
            "inputs_from": inputs_from,  # the eval config whose prompt, frames and windows were taken, if any
            "decoding": decoding_name,
            "decoding_sources": {
                **(decoding["sources"] if decoding else {}),
                **{name: "command line" for name in run.generation_overrides},
            },
            "classify_by": "likelihood" if task.method == "likelihood" else "generation",
            "batch_size": run.batch_size,
        },
        "preset": run.preset,
        "published": figure,
        "model": str(run.model),
        "annotations": str(run.annotations),
        "media_dir": str(run.media_dir),
    }
    report = {
        "task": task.name,
        "metrics": metrics,
        "method": task.method,
        "generation": generation,
        **details,
    }
    return write_evaluation_report(result, scored, task, run.output_dir, details, benchmark_markdown(report))


def benchmark_markdown(report: dict) -> str:
    """report.md: the scores with their intervals, the published figure, failures and settings."""
    partial_note = (
        f" — partial: {report['items']} of {report['total_items']} items" if report["partial"] else ""
    )
    lines = [
        f"# {report['benchmark']} ({report['modality']}, {report['task']}){partial_note}",
        "",
        f"Items: {report['items']}; scored: {report['scored']}; failed: {report['failed']}.",
        "",
        "| metric | value | 95% interval |",
        "| --- | --- | --- |",
    ]
    for name, value in report["metrics"].items():
        interval = report["intervals"].get(name)
        shown = f"{interval['low']:.4f} – {interval['high']:.4f}" if interval else NONE
        lines.append(f"| {name} | {value:.4f} | {shown} |")
    lines += [f"| {name} | {reason} | {NONE} |" for name, reason in report["not_provided"].items()]
    figure = report["published"]
    published = NONE if figure["value"] is None else f"{figure['value']} ({figure['metric']})"
    ours = f"; ours as the paper prints it: {figure['ours']}" if "ours" in figure else ""
    lines += [
        "",
        f"Intervals: {report['interval_method']}.",
        "",
        f"Published figure for preset {report['preset'] or NONE}: {published}{ours}. Source: {figure['source']}.",
        "",
        "## Settings",
        "",
        f"- prompt format: `{json.dumps(report['settings']['prompt_format'])}`",
        f"- decoding: {report['settings']['decoding'] or 'the task default'}, `{json.dumps(report['generation'])}`",
        f"- classify by: {report['settings']['classify_by']}",
    ]
    if report["failures"]:
        lines += ["", "## Failed items", "", "| id | reason |", "| --- | --- |"]
        lines += [f"| {failure['id']} | {failure['reason']} |" for failure in report["failures"]]
    return "\n".join(lines) + "\n"


__all__ = ["BenchmarkRun", "run_benchmark", "wilson_interval"]
