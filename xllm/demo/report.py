"""The demo's report: a terminal table, report.md, report.json and PNG plots."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .settings import DemoSettings  # noqa: E402


def percent(entry: dict) -> str:
    return f"{100 * entry['accuracy']:.1f}% [{100 * entry['low']:.1f}, {100 * entry['high']:.1f}]"


# The targets. Attribute goals per evaluation set (from generated captions); speech WER and
# DisCRn on the in-distribution test set carry the papers' claims; held-out combinations are reported
# with a goal of their own.
ATTRIBUTE_GOALS = {"train": 0.98, "in_distribution": 0.95, "held_out": 0.80}
WER_GOAL = 0.10
DISCRN_GOAL = 0.85  # in-distribution pairs
BASELINE_MARGIN = 0.05  # at most this far below the caption baseline
ABLATION_MARGIN = 0.10  # at least this far above the linear ablation at an equal budget
SET_TITLES = {
    "train": "training split",
    "in_distribution": "in-distribution",
    "held_out": "held-out combinations",
}
TEST_SET_NAMES = ("in_distribution", "held_out")


def evaluation_sets(results: dict) -> list[str]:
    return [name for name in SET_TITLES if name in results]


def _attribute_cause(report: dict, evaluation_set: str, modality: str, name: str, goal: float) -> str:
    """The stage a missed attribute points to: the stage-0 encoder's own heads on the same set read
    it below the goal (the encoder), or at it (the interface and LLM lose it)."""
    diagnostics = report["diagnostics"]
    encoder_modality = "image" if modality == "video" else modality  # video frames: the image encoder
    encoder = diagnostics.get(f"encoder_{encoder_modality}_{evaluation_set}_{name}")
    if modality == "video" and name in ("direction", "speed"):
        # Measured only when the vision stand-in learned motion (`DemoSettings.encoder_motion_videos`).
        encoder = diagnostics.get(f"encoder_video_{evaluation_set}_{name}")
        if encoder is None:
            if report.get("settings", {}).get("video_time"):
                return (
                    "motion: the encoder sees single frames; the video interface reads both, each marked "
                    "with its time (video time), and has not learned to name the motion"
                )
            return "motion: frames are read one by one (no video time), the encoder sees single images"
    if encoder is None:
        return "no encoder measure"
    if encoder < goal:
        return f"the stage-0 encoder itself reads it at {100 * encoder:.0f}%"
    return f"the encoder reads it at {100 * encoder:.0f}%: the interface loses it"


def _speech_cause(speech: dict, encoder_wer: float | None) -> str:
    """For a missed WER: what the stage-0 encoder recognises alone, and how often CIF fires the
    transcript's token count."""
    if speech["wer"] <= WER_GOAL:
        return ""
    parts = []
    if encoder_wer is not None:
        parts.append(f"the stage-0 encoder's own CTC WER is {100 * encoder_wer:.1f}%")
    count = speech.get("cif_token_count")
    if count is not None:
        parts.append(
            f"CIF fires the transcript's token count for {100 * count['exact_count']['accuracy']:.0f}% of utterances"
        )
    return f" ({'; '.join(parts)})" if parts else ""


def target_checks(report: dict) -> list[dict]:
    """Every target of the issue this report measures, as {name, met, text} (attribute: True for the
    per-attribute goals): `name` identifies the
    target across runs (seeds), `text` states the figure and, for a miss, the measured stage it
    points to: an attribute the stage-0 encoder itself cannot read on the same set is limited by the
    encoder, one it can read by the interface; a comparison the LLM answers from true captions but
    not from media is limited by the interfaces."""
    results, diagnostics = report["results"], report["diagnostics"]
    checks = []
    for evaluation_set in evaluation_sets(results):
        goal = ATTRIBUTE_GOALS[evaluation_set]
        for modality, entry in results[evaluation_set]["captioning"].items():
            for attribute, value in entry["attributes"].items():
                name = f"{SET_TITLES[evaluation_set]} {modality} {attribute}"
                met = value["accuracy"] >= goal
                text = f"{name} {percent(value)}, goal {100 * goal:.0f}%"
                if not met:
                    text += f" ({_attribute_cause(report, evaluation_set, modality, attribute, goal)})"
                checks.append({"name": name, "met": met, "text": text, "attribute": True})
    speech = results.get("in_distribution", {}).get("speech")
    if speech is not None:
        checks.append(
            {
                "name": "in-distribution speech WER",
                "met": speech["wer"] <= WER_GOAL,
                "text": f"in-distribution speech WER {100 * speech['wer']:.1f}% (goal at most {100 * WER_GOAL:.0f}%)"
                + _speech_cause(speech, diagnostics.get("encoder_speech_in_distribution_ctc_wer")),
            }
        )
    ablation = results.get("ablation", {})
    for test_set in TEST_SET_NAMES:
        for pair, entry in results.get(test_set, {}).get("discrn", {}).items():
            checks += _discrn_checks(test_set, pair, entry, ablation, diagnostics)
    return checks


def target_lines(report: dict) -> list[str]:
    """The Targets section: the met attributes counted, every other target listed, met or missed."""
    checks = target_checks(report)
    if all(check["met"] for check in checks):
        return ["Every target is met.", ""]
    attributes_met = sum(check["met"] and check.get("attribute", False) for check in checks)
    lines = [
        f"- {'met' if check['met'] else 'missed'}: {check['text']}"
        for check in checks
        if not (check["met"] and check.get("attribute", False))
    ]
    header = (
        f"{attributes_met} attribute(s) at or above their set's goal (not listed; goals: "
        + ", ".join(f"{SET_TITLES[k]} {100 * v:.0f}%" for k, v in ATTRIBUTE_GOALS.items())
        + "); every other target below, each miss with the measured stage it points to."
    )
    return [header, "", *lines, ""]


def _discrn_checks(test_set: str, pair: str, entry: dict, ablation: dict, diagnostics: dict) -> list[dict]:
    """In-distribution pairs: the goal, the caption baseline's margin, and the margin over the linear
    ablation when it ran at an equal budget; held-out pairs: the interval above chance. With any
    ablation, whether the Q-Former is above the linear interface (a conclusion seeds must agree on)."""
    accuracy = entry["x-llm"]
    text_only = diagnostics.get(f"llm_text_comparison_{test_set}_{pair}")
    ceiling = (
        f"; the frozen LLM answers the same pairs from their true captions at {100 * text_only:.0f}%"
        if text_only is not None
        else ""
    )
    name = f"DisCRn {SET_TITLES[test_set]} {pair}"
    figure = f"{name} {percent(accuracy)}"
    checks = []
    if test_set == "held_out":
        above = accuracy["low"] > 0.5
        chance = "above chance" if above else "NOT above chance"
        checks.append(
            {"name": name, "met": above, "text": f"{figure}, goal: lower bound above 50%, {chance}{ceiling}"}
        )
    else:
        checks.append(
            {
                "name": name,
                "met": accuracy["accuracy"] >= DISCRN_GOAL,
                "text": f"{figure}, goal {100 * DISCRN_GOAL:.0f}%{ceiling}",
            }
        )
        if "caption_baseline" in entry:
            gap = accuracy["accuracy"] - entry["caption_baseline"]["accuracy"]
            checks.append(
                {
                    "name": f"{name} against the caption baseline",
                    "met": gap >= -BASELINE_MARGIN,
                    "text": f"{name}: {100 * gap:+.1f} points against the caption baseline "
                    f"{percent(entry['caption_baseline'])} (goal at least -{100 * BASELINE_MARGIN:.0f})",
                }
            )
    linear = ablation.get(test_set, {}).get(pair)
    if linear is not None:
        gap = accuracy["accuracy"] - linear["x-llm"]["accuracy"]
        setting = ablation["setting"].replace("_", " ")
        checks.append(
            {
                "name": f"{name} Q-Former above linear",
                "met": gap > 0,
                "text": f"{name}: Q-Former above the linear ablation ({setting}) {percent(linear['x-llm'])}: "
                f"{100 * gap:+.1f} points",
            }
        )
        if test_set == "in_distribution" and ablation["setting"] == "equal_budget":
            checks.append(
                {
                    "name": f"{name} margin over linear at an equal budget",
                    "met": gap >= ABLATION_MARGIN,
                    "text": f"{name}: {100 * gap:+.1f} points over the linear ablation at an equal budget "
                    f"(goal at least +{100 * ABLATION_MARGIN:.0f})",
                }
            )
    return checks


def not_run_lines(report: dict) -> list[str]:
    """What this run left out for time, and the command that runs it."""
    settings, lines = report.get("settings", {}), []
    ablation = settings.get("ablation")
    if ablation == "none":
        lines.append(
            "- The linear-interface ablation: `xllm demo --full` trains it at an equal budget (the Q-Formers' "
            "stages, steps, learning rates and data)."
        )
    elif ablation == "alignment_only":
        steps = report["results"]["ablation"]["steps"]["stage 2: alignment"]
        lines.append(
            f"- The ablation at an equal budget: the linear interfaces here had {steps} alignment steps "
            "and no instruction tuning, fewer than the Q-Formers; `xllm demo --full` gives them the same "
            "stages, steps, learning rates and data."
        )
    full_steps = DemoSettings().full().alignment.steps
    steps = settings.get("alignment", {}).get("steps", full_steps)
    if steps < full_steps:
        lines.append(
            f"- The longer alignment: {steps} stage-2 steps here; `xllm demo --full` runs {full_steps} "
            "(colour, the attribute the interfaces learn last, needs them; see settings.py)."
        )
    if report.get("seeds") is None:
        lines.append(
            f"- Other seeds: this is seed {settings.get('seed', 0)} alone; `xllm demo --seeds 0,1,2` gives "
            "each figure's mean and range."
        )
    return ["## Not run in this report", "", *lines, ""] if lines else []


def markdown_report(report: dict) -> str:
    results = report["results"]
    sets = evaluation_sets(results)
    lines = ["# X-LLM demo report", "", "Every accuracy comes with its 95% Wilson interval [low, high].", ""]
    lines += [
        "Evaluation sets: the *training split* (its first items: what the model was taught), the "
        "*in-distribution* test split (new draws of the attribute combinations training shows: the papers' "
        "claims) and the *held-out combinations* (never trained: compositional generalisation).",
        "",
    ]
    settings = report.get("settings", {})
    world_seed = settings.get("world_seed")
    lines += [
        f"Run: interface seed {settings.get('seed', 0)}, world and stage-0 seed "
        f"{settings.get('seed', 0) if world_seed is None else world_seed}, {report.get('threads', '?')} torch "
        "thread(s) (figures repeat for the same seeds, machine and thread count).",
        "",
    ]
    lines += ["## Time per phase", "", "| phase | seconds |", "| --- | ---: |"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in report["timings_seconds"].items()]
    lines += [f"| **total** | {sum(report['timings_seconds'].values()):.1f} |", ""]
    lines += ["## Attribute accuracy from generated captions", ""]
    lines += ["| modality | attribute | " + " | ".join(SET_TITLES[name] for name in sets) + " |"]
    lines += ["| --- | --- |" + " --- |" * len(sets)]
    for modality, entry in results[sets[0]]["captioning"].items():
        cider = [f"{results[name]['captioning'][modality]['cider']:.3f}" for name in sets]
        lines.append(f"| {modality} | CIDEr | " + " | ".join(cider) + " |")
        for attribute in entry["attributes"]:
            values = [
                percent(results[name]["captioning"][modality]["attributes"][attribute]) for name in sets
            ]
            lines.append(f"| {modality} | {attribute} | " + " | ".join(values) + " |")
    speech_sets = [name for name in sets if "speech" in results[name]]
    if speech_sets:
        lines += [
            "",
            "Speech recognition, and where its errors come from: the stage-0 encoder's own recognition (its CTC "
            "head, greedy), and the tokens CIF fires against the transcript's (a wrong count shifts every later word):",
            "",
            "| set | WER (C-Former + LLM) | exact transcripts | encoder CTC WER | CIF count exact | CIF count mean error |",
            "| --- | ---: | --- | ---: | --- | ---: |",
        ]
        for name in speech_sets:
            speech = results[name]["speech"]
            ctc = report["diagnostics"].get(f"encoder_speech_{name}_ctc_wer")
            count = speech.get("cif_token_count")
            cells = [
                SET_TITLES[name],
                f"{100 * speech['wer']:.1f}%",
                percent(speech["exact_transcripts"]),
                f"{100 * ctc:.1f}%" if ctc is not None else "-",
                percent(count["exact_count"]) if count else "-",
                f"{count['mean_difference']:+.2f} tokens" if count else "-",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Cross-modal comparison (DisCRn-style; no cross-modal pair was ever trained)", ""]
    ablation = results.get("ablation", {})
    if ablation:
        steps = ", ".join(f"{name} {count}" for name, count in ablation["steps"].items())
        lines += [
            f"Linear ablation: {ablation['setting'].replace('_', ' ')}, `linear_variant={ablation['linear_variant']}` "
            f"(steps: {steps}).",
            "",
        ]
    lines += [
        "| test set | pair | chance | caption baseline | linear ablation | X-LLM (Q-Former) | invalid answers |",
        "| --- | --- | ---: | --- | --- | --- | ---: |",
    ]
    for test_set in (name for name in TEST_SET_NAMES if name in results):
        for pair, entry in results[test_set]["discrn"].items():
            baseline = percent(entry["caption_baseline"]) if "caption_baseline" in entry else "-"
            linear_entry = ablation.get(test_set, {}).get(pair)
            linear = percent(linear_entry["x-llm"]) if linear_entry else "-"
            lines.append(
                f"| {SET_TITLES[test_set]} | {pair} | 50% | {baseline} | {linear} | {percent(entry['x-llm'])} "
                f"| {100 * entry['x-llm']['invalid_rate']:.1f}% |"
            )
    lines += ["", "## Targets", "", *target_lines(report)]
    lines += not_run_lines(report)
    lines += ["## Stage-0 diagnostics", "", "| measure | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in report["diagnostics"].items()]
    lines += ["", "## Example captions", ""]
    for name in sets:
        for modality, entry in results[name]["captioning"].items():
            for example in entry["examples"][:2]:
                lines.append(
                    f"- {SET_TITLES[name]}, {modality}: reference *{example['reference']}*, "
                    f"generated *{example['prediction']}*"
                )
    return "\n".join(lines) + "\n"


def headline_figures(report: dict) -> dict[str, float]:
    """The figures the issue asks to be stable across seeds, in percent: per-modality mean attribute
    accuracy per evaluation set, speech WER, each DisCRn accuracy (Q-Former, caption baseline,
    linear ablation) and the Q-Former-minus-linear gap."""
    results, figures = report["results"], {}
    for name in evaluation_sets(results):
        for modality, entry in results[name]["captioning"].items():
            values = [value["accuracy"] for value in entry["attributes"].values()]
            figures[f"{SET_TITLES[name]} {modality} mean attribute accuracy"] = (
                100 * sum(values) / len(values)
            )
        if "speech" in results[name]:
            figures[f"{SET_TITLES[name]} speech WER"] = 100 * results[name]["speech"]["wer"]
    ablation = results.get("ablation", {})
    for test_set in (name for name in TEST_SET_NAMES if name in results):
        for pair, entry in results[test_set]["discrn"].items():
            prefix = f"DisCRn {SET_TITLES[test_set]} {pair}"
            figures[f"{prefix} X-LLM"] = 100 * entry["x-llm"]["accuracy"]
            if "caption_baseline" in entry:
                figures[f"{prefix} caption baseline"] = 100 * entry["caption_baseline"]["accuracy"]
            linear = ablation.get(test_set, {}).get(pair)
            if linear is not None:
                figures[f"{prefix} linear ablation"] = 100 * linear["x-llm"]["accuracy"]
                figures[f"{prefix} Q-Former minus linear"] = (
                    figures[f"{prefix} X-LLM"] - figures[f"{prefix} linear ablation"]
                )
    return figures


STABLE_RANGE = 5.0  # points: the stability target for every headline figure across seeds


def seeds_summary(reports: dict[int, dict]) -> dict:
    """Seed -> report, summarised: each headline figure's values, mean and range (max - min), and
    each target's verdict per seed (a conclusion holds when every seed agrees)."""
    figures = {seed: headline_figures(report) for seed, report in reports.items()}
    names = [name for name in next(iter(figures.values())) if all(name in f for f in figures.values())]
    summary = {"seeds": list(reports), "figures": {}, "targets": {}}
    for name in names:
        values = [figures[seed][name] for seed in reports]
        summary["figures"][name] = {
            "values": values,
            "mean": sum(values) / len(values),
            "range": max(values) - min(values),
        }
    for seed, report in reports.items():
        for check in target_checks(report):
            summary["targets"].setdefault(check["name"], {})[str(seed)] = check["met"]
    return summary


def seeds_markdown(summary: dict) -> str:
    seeds = summary["seeds"]
    lines = [f"# X-LLM demo over seeds {', '.join(map(str, seeds))}", ""]
    lines += [
        "Each seed's own report is in its `seed-N/` folder. Headline figures in percent: mean and range "
        f"(max - min) over the seeds; the stability target is a range of at most {STABLE_RANGE:.0f} points.",
        "",
        "| figure | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean | range | stable |",
        "| --- |" + " ---: |" * len(seeds) + " ---: | ---: | --- |",
    ]
    for name, entry in summary["figures"].items():
        values = " | ".join(f"{value:.1f}" for value in entry["values"])
        stable = "yes" if entry["range"] <= STABLE_RANGE else "no"
        lines.append(f"| {name} | {values} | {entry['mean']:.1f} | {entry['range']:.1f} | {stable} |")
    lines += ["", "## Conclusions across seeds", ""]
    lines += ["| target | " + " | ".join(f"seed {seed}" for seed in seeds) + " | holds for every seed |"]
    lines += ["| --- |" + " --- |" * len(seeds) + " --- |"]
    for name, verdicts in summary["targets"].items():
        cells = [{True: "met", False: "missed"}.get(verdicts.get(str(seed)), "-") for seed in seeds]
        agree = len(set(verdicts.values())) == 1 and len(verdicts) == len(seeds)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if agree else 'NO'} |")
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
    """Attribute accuracy per modality and DisCRn accuracy per method, one colour per evaluation set,
    with 95% intervals."""
    bars = []  # (label, evaluation set, value)
    for name in evaluation_sets(results):
        for modality, entry in results[name]["captioning"].items():
            bars += [
                (f"{modality}\n{attribute}", name, value) for attribute, value in entry["attributes"].items()
            ]
    for test_set in (name for name in TEST_SET_NAMES if name in results):
        for pair, entry in results[test_set]["discrn"].items():
            bars.append((f"{pair}\nX-LLM", test_set, entry["x-llm"]))
            if "caption_baseline" in entry:
                bars.append((f"{pair}\ncaptions", test_set, entry["caption_baseline"]))
            linear = results.get("ablation", {}).get(test_set, {}).get(pair)
            if linear:
                bars.append((f"{pair}\nlinear", test_set, linear["x-llm"]))
    colours = {"train": "tab:grey", "in_distribution": "tab:blue", "held_out": "tab:orange"}
    figure, axis = plt.subplots(figsize=(max(6, 0.35 * len(bars)), 4))
    heights = [value["accuracy"] for _, _, value in bars]
    errors = [  # clipped at 0: the interval bounds can miss the estimate by a rounding error
        [max(0.0, h - v["low"]) for h, (_, _, v) in zip(heights, bars, strict=True)],
        [max(0.0, v["high"] - h) for h, (_, _, v) in zip(heights, bars, strict=True)],
    ]
    axis.bar(range(len(bars)), heights, yerr=errors, capsize=2, color=[colours[name] for _, name, _ in bars])
    chance = axis.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance (DisCRn)")
    handles = [
        Patch(color=colour, label=SET_TITLES[name])
        for name, colour in colours.items()
        if any(bar_set == name for _, bar_set, _ in bars)
    ]
    axis.set_xticks(range(len(bars)), [label for label, _, _ in bars], rotation=90, fontsize=6)
    axis.set_ylim(0, 1)
    axis.set_ylabel("accuracy (95% interval)")
    axis.legend(handles=[*handles, chance], fontsize=7)
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


def write_seeds_report(reports: dict[int, dict], output: Path) -> str:
    """seeds.json and report.md over several seeds' reports; returns the Markdown."""
    output.mkdir(parents=True, exist_ok=True)
    summary = seeds_summary(reports)
    (output / "seeds.json").write_text(json.dumps(summary, indent=2))
    markdown = seeds_markdown(summary)
    (output / "report.md").write_text(markdown)
    return markdown
