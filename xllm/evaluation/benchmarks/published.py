"""The papers' figures for each benchmark and preset (`published.json`), and the README's benchmark table.

`published.json` holds, per benchmark, the metric the papers report and one figure per preset:
`{"value", "table", "row"}` as the paper prints it (percent, CIDEr x 100), or a null value with `why`
none is given (not reported, held-in, or not read). A report shows the figure with its source (paper,
table, row) or "—" with the reason. `benchmark_table` writes the README's table from the registry and this
file (`scripts/make_benchmark_table.py`).
"""

import json
from functools import cache
from pathlib import Path

from .benchmark import Benchmark

TABLE_PATH = Path(__file__).with_name("published.json")
# What each task reports (the README's metric column).
TASK_METRICS = {
    "captioning": "CIDEr, BLEU-4, ROUGE-L (METEOR, SPICE: not provided, need Java)",
    "vqa": "VQA accuracy",
    "classification": "top-1 accuracy",
    "asr": "WER, CER",
    "discrn": "DisCRn accuracy (ours and LAVIS's scoring)",
}
NONE = "—"


@cache
def published_table() -> dict:
    return json.loads(TABLE_PATH.read_text(encoding="utf-8"))


def published_presets() -> list[str]:
    return list(published_table()["presets"])


def published_figure(benchmark: str, preset: str | None) -> dict:
    """`{"metric", "value", "source"}` of a benchmark for a preset: `value` None (shown "—") where no figure is
    given, `source` then saying why; without a preset, no figure."""
    table = published_table()
    entry = table["benchmarks"].get(benchmark)
    if entry is None:
        return {"metric": None, "value": None, "source": f"{benchmark} has no entry in published.json"}
    if preset is None:
        return {"metric": entry["metric"], "value": None, "source": "no --preset given"}
    if preset not in table["presets"]:
        raise ValueError(
            f"--preset must be one of {published_presets()} (those with published figures), got {preset!r}."
        )
    figure = entry["figures"][preset]
    if figure["value"] is None:
        return {"metric": entry["metric"], "value": None, "source": figure["why"]}
    paper = table["papers"][table["presets"][preset]]
    source = f"{paper}, Table {figure['table']}, row {figure['row']}"
    return {"metric": entry["metric"], "value": figure["value"], "source": source}


def figure_cell(benchmark: str, preset: str) -> str:
    """A figure as the README's table shows it: "value (Table N, row)", or "—"."""
    figure = published_table()["benchmarks"].get(benchmark, {}).get("figures", {}).get(preset)
    if figure is None or figure["value"] is None:
        return NONE
    return f"{figure['value']} (Table {figure['table']}, {figure['row']})"


def benchmark_command(benchmark: Benchmark) -> str:
    """The README's command for a benchmark, with the preset of the system that evaluates its modality
    (speech: X-LLM; X-InstructBLIP has no speech interface)."""
    preset = "x-llm" if benchmark.modality == "speech" else "x-instructblip-7b"
    return (
        f"xllm evaluate --benchmark {benchmark.name} --annotations ANNOTATIONS --media-dir MEDIA "
        f"--model MODEL --preset {preset} --output eval/{benchmark.name}"
    )


def benchmark_table(benchmarks: dict[str, Benchmark]) -> str:
    """The README's table (name, modality, annotation file, media naming, metric, X-InstructBLIP 7b / 13b
    figures) and one command per benchmark, as Markdown."""
    lines = [
        "| benchmark | modality | annotation file (`--annotations`) | media under `--media-dir` | metric | "
        "X-InstructBLIP 7b | X-InstructBLIP 13b |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    reasons = set()
    for name, benchmark in benchmarks.items():
        cells = [figure_cell(name, preset) for preset in ("x-instructblip-7b", "x-instructblip-13b")]
        for preset in ("x-instructblip-7b", "x-instructblip-13b"):
            figure = published_figure(name, preset)
            if figure["value"] is None:
                reasons.add(figure["source"])
        lines.append(
            f"| `{name}` | {benchmark.modality} | {benchmark.annotations} | {benchmark.media} | "
            f"{TASK_METRICS[benchmark.task]} | {cells[0]} | {cells[1]} |"
        )
    notes = [f"- {NONE}: {reason}." for reason in sorted(reasons)]
    commands = ["```bash", *(benchmark_command(benchmark) for benchmark in benchmarks.values()), "```"]
    return "\n".join([*lines, "", *notes, "", *commands]) + "\n"


__all__ = ["TASK_METRICS", "benchmark_table", "published_figure", "published_presets", "published_table"]
