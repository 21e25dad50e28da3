"""The demo's report: a terminal table, report.md, report.json and PNG plots."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def percent(entry: dict) -> str:
    return f"{100 * entry['accuracy']:.1f}% [{100 * entry['low']:.1f}, {100 * entry['high']:.1f}]"


ATTRIBUTE_GOAL = 0.9
DISCRN_GOAL = 0.8
WER_GOAL = 0.15


def target_lines(report: dict) -> list[str]:
    """The issue's accuracy targets, each met or missed, and for a miss the measured stage it points
    to: an attribute the stage-0 encoder itself cannot read on the test split is limited by the
    encoder, one it can read by the interface; a comparison the LLM answers from captions but not
    from media is limited by the interfaces."""
    results, diagnostics = report["results"], report["diagnostics"]
    lines, attributes_met = [], 0
    for modality, entry in results["captioning"].items():
        for name, value in entry["attributes"].items():
            if value["accuracy"] >= ATTRIBUTE_GOAL:
                attributes_met += 1
                continue
            encoder_modality = "image" if modality == "video" else modality  # video frames: the image encoder
            encoder = diagnostics.get(f"encoder_{encoder_modality}_test_{name}")
            if modality == "video" and name in ("direction", "speed"):
                cause = "motion: frames are read one by one (no temporal embedding), the encoder sees single images"
            elif encoder is None:
                cause = "no encoder measure"
            elif encoder < ATTRIBUTE_GOAL:
                cause = f"the stage-0 encoder itself reads it at {100 * encoder:.0f}%"
            else:
                cause = f"the encoder reads it at {100 * encoder:.0f}%: the interface loses it"
            lines.append(
                f"- missed: {modality} {name} {percent(value)} < {100 * ATTRIBUTE_GOAL:.0f}% ({cause})"
            )
    if "speech" in results:
        wer = results["speech"]["wer"]
        verdict = "met" if wer <= WER_GOAL else "missed"
        lines.append(f"- {verdict}: speech WER {100 * wer:.1f}% (goal at most {100 * WER_GOAL:.0f}%)")
    for pair, entry in results["discrn"].items():
        accuracy = entry["x-llm"]
        above_chance = "above chance" if accuracy["low"] > 0.5 else "NOT above chance"
        verdict = "met" if accuracy["accuracy"] >= DISCRN_GOAL else "missed"
        text_only = diagnostics.get(f"llm_text_comparison_{pair}")
        ceiling = (
            f"; the frozen LLM answers the same pairs from their true captions at {100 * text_only:.0f}%"
            if text_only is not None
            else ""
        )
        lines.append(
            f"- {verdict}: DisCRn {pair} {percent(accuracy)}, goal {100 * DISCRN_GOAL:.0f}%, {above_chance}{ceiling}"
        )
    if not any(line.startswith("- missed") for line in lines):
        return ["Every accuracy target is met.", ""]
    header = (
        f"{attributes_met} attribute(s) at or above {100 * ATTRIBUTE_GOAL:.0f}% (not listed); every other target below, "
        "each miss with the measured stage it points to."
    )
    return [header, "", *lines, ""]


def markdown_report(report: dict) -> str:
    results = report["results"]
    lines = ["# X-LLM demo report", "", "Every accuracy comes with its 95% Wilson interval [low, high].", ""]
    lines += ["## Time per phase", "", "| phase | seconds |", "| --- | ---: |"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in report["timings_seconds"].items()]
    lines += [f"| **total** | {sum(report['timings_seconds'].values()):.1f} |", ""]
    lines += [
        "## Captioning on held-out attribute combinations",
        "",
        "| modality | CIDEr | attribute accuracy |",
        "| --- | ---: | --- |",
    ]
    for modality, entry in results["captioning"].items():
        attributes = ", ".join(f"{name} {percent(value)}" for name, value in entry["attributes"].items())
        lines.append(f"| {modality} | {entry['cider']:.3f} | {attributes} |")
    if "speech" in results:
        speech = results["speech"]
        lines += [
            "",
            f"Speech recognition: WER {100 * speech['wer']:.1f}%, exact transcripts {percent(speech['exact_transcripts'])}.",
        ]
    lines += ["", "## Cross-modal comparison (DisCRn-style; no cross-modal pair was ever trained)", ""]
    lines += [
        "| pair | chance | caption baseline | linear ablation | X-LLM (Q-Former) | invalid answers |",
        "| --- | ---: | --- | --- | --- | ---: |",
    ]
    for pair, entry in results["discrn"].items():
        baseline = percent(entry["caption_baseline"]) if "caption_baseline" in entry else "-"
        ablation = results.get("ablation", {}).get(pair)
        linear = percent(ablation["x-llm"]) if ablation else "-"
        lines.append(
            f"| {pair} | 50% | {baseline} | {linear} | {percent(entry['x-llm'])} | {100 * entry['x-llm']['invalid_rate']:.1f}% |"
        )
    lines += ["", "## Targets", "", *target_lines(report)]
    lines += ["## Stage-0 diagnostics", "", "| measure | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in report["diagnostics"].items()]
    lines += ["", "## Example captions", ""]
    for modality, entry in results["captioning"].items():
        for example in entry["examples"][:3]:
            lines.append(
                f"- {modality}: reference *{example['reference']}*, generated *{example['prediction']}*"
            )
    return "\n".join(lines) + "\n"


def plot_losses(losses: dict[str, list[float]], path: Path) -> None:
    phases = [name for name, values in losses.items() if values]
    columns = min(3, max(1, len(phases)))
    rows = (len(phases) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, name in zip(axes.flat, phases, strict=False):
        axis.plot(losses[name])
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("logged step")
        axis.set_ylabel("loss")
    for axis in list(axes.flat)[len(phases) :]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_results(results: dict, path: Path) -> None:
    """Attribute accuracy per modality and DisCRn accuracy per method, with 95% intervals."""
    bars = []
    for modality, entry in results["captioning"].items():
        bars += [(f"{modality}\n{name}", value) for name, value in entry["attributes"].items()]
    for pair, entry in results["discrn"].items():
        bars.append((f"{pair}\nX-LLM", entry["x-llm"]))
        if "caption_baseline" in entry:
            bars.append((f"{pair}\ncaptions", entry["caption_baseline"]))
        ablation = results.get("ablation", {}).get(pair)
        if ablation:
            bars.append((f"{pair}\nlinear", ablation["x-llm"]))
    figure, axis = plt.subplots(figsize=(max(6, 0.6 * len(bars)), 4))
    heights = [value["accuracy"] for _, value in bars]
    errors = [  # clipped at 0: the interval bounds can miss the estimate by a rounding error
        [max(0.0, h - v["low"]) for h, (_, v) in zip(heights, bars, strict=True)],
        [max(0.0, v["high"] - h) for h, (_, v) in zip(heights, bars, strict=True)],
    ]
    axis.bar(range(len(bars)), heights, yerr=errors, capsize=3, color="tab:blue")
    axis.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance (DisCRn)")
    axis.set_xticks(range(len(bars)), [name for name, _ in bars], rotation=90, fontsize=7)
    axis.set_ylim(0, 1)
    axis.set_ylabel("accuracy (95% interval)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_demo_report(report: dict, output: Path) -> str:
    """report.json, report.md, losses.png, results.png; returns the Markdown."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.json").write_text(json.dumps(report, indent=2))
    markdown = markdown_report(report)
    (output / "report.md").write_text(markdown)
    plot_losses(report["losses"], output / "losses.png")
    plot_results(report["results"], output / "results.png")
    return markdown
