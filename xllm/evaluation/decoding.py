"""Decoding settings per LAVIS eval config, as LAVIS's evaluation code really applies them.

X-InstructBLIP's eval configs (LAVIS `lavis/projects/xinstruct_blip/eval/**.yaml`) set decoding
under `run:`, but which of those keys take effect depends on the LAVIS task class the config names,
and the rest comes from defaults in the task and in `Blip2VicunaXInstruct`:

| LAVIS task | read from `run:` (default) | fixed by the code |
| --- | --- | --- |
| `captioning` | num_beams (5), max_len (30), min_len (1), repetition_penalty (1.15), length_penalty (0) (captioning.py:44-48) | |
| `vqa`, `gqa`, `discrn_qa` | num_beams (3), max_len (10), min_len (1) (vqa.py:63-65) | length_penalty -1 (`predict_answers`, blip2_vicuna_xinstruct.py:1521), repetition_penalty 1.5 (`generate`, :1106) |
| `multimodal_classification` | max_len (30), min_len (1), length_penalty (-1) (multimodal_classification.py:38-40) | num_beams 5 and repetition_penalty 1.5 (`generate`, :1102, :1106), used only with the model's `predict_with_gen`; otherwise candidates are ranked by likelihood (`_predict_class`) |

So a `length_penalty` written under `run:` of a QA or DisCRn config is never read (VQATask passes
none to `predict_answers`): `discrn/image_3d_describe.yaml:130` says 1.0 and `vicuna13b/image/vizwiz_qa.yaml:133`
says 1.0, yet both decode with -1. The table keeps such ignored values apart (`ignored`), with their
lines, so the difference stays visible.

LAVIS passes only `inputs_embeds` to the LLM's `generate` (blip2_vicuna_xinstruct.py:1492), so with
its transformers 4.33 `max_length` / `min_length` count new tokens only: they are our
`max_new_tokens` / `min_new_tokens`. LAVIS evaluates without sampling (`use_nucleus_sampling=False`,
captioning.py:106, blip2_vicuna_xinstruct.py:1101), so `do_sample` is False even over an LLM whose
own generation config samples, and the sampling keys (`top_p`, `temperature`) are left out.

Each row also holds the config's `inputs` (`inputs_from_lavis_config`): the prompt format, video frames and audio
windows it builds, which `xllm evaluate --benchmark` gives a model of the `lavis` format.

The table ships as `lavis_decoding.json` (made by `decoding_table` from the LAVIS tree; a test
compares it with the LAVIS mirror when one is at hand). `xllm evaluate --decoding NAME` picks a
row by its path under `eval/` without `.yaml` (`vicuna7b/image/okvqa_qa`), or reads a LAVIS yaml
file directly.
"""

import json
from functools import cache
from pathlib import Path

import yaml

TABLE_PATH = Path(__file__).with_name("lavis_decoding.json")

# Where each default lives in LAVIS (file:line at the mirrored commit).
QA_TASKS = ("vqa", "gqa", "aok_vqa", "discrn_qa")
RUN_KEYS = {
    # LAVIS task: {run key: (our generate keyword, default, where the default is)}
    "captioning": {
        "num_beams": ("num_beams", 5, "lavis/tasks/captioning.py:44"),
        "max_len": ("max_new_tokens", 30, "lavis/tasks/captioning.py:45"),
        "min_len": ("min_new_tokens", 1, "lavis/tasks/captioning.py:46"),
        "repetition_penalty": ("repetition_penalty", 1.15, "lavis/tasks/captioning.py:47"),
        "length_penalty": ("length_penalty", 0.0, "lavis/tasks/captioning.py:48"),
    },
    "qa": {
        "num_beams": ("num_beams", 3, "lavis/tasks/vqa.py:63"),
        "max_len": ("max_new_tokens", 10, "lavis/tasks/vqa.py:64"),
        "min_len": ("min_new_tokens", 1, "lavis/tasks/vqa.py:65"),
    },
    "multimodal_classification": {
        "max_len": ("max_new_tokens", 30, "lavis/tasks/multimodal_classification.py:38"),
        "min_len": ("min_new_tokens", 1, "lavis/tasks/multimodal_classification.py:39"),
        "length_penalty": ("length_penalty", -1.0, "lavis/tasks/multimodal_classification.py:40"),
    },
}
MODEL_FILE = "lavis/models/blip2_models/blip2_vicuna_xinstruct.py"
FIXED = {
    "qa": {
        "length_penalty": (-1.0, f"{MODEL_FILE}:1521"),
        "repetition_penalty": (1.5, f"{MODEL_FILE}:1106"),
        "do_sample": (False, f"{MODEL_FILE}:1101"),
    },
    "multimodal_classification": {
        "num_beams": (5, f"{MODEL_FILE}:1102"),
        "repetition_penalty": (1.5, f"{MODEL_FILE}:1106"),
        "do_sample": (False, f"{MODEL_FILE}:1101"),
    },
    "captioning": {"do_sample": (False, "lavis/tasks/captioning.py:106")},
}


def key_lines(block: str, first_line: int) -> dict[str, int]:
    """Line number of each key directly under a block (two-space indented `key:`)."""
    lines = {}
    for offset, line in enumerate(block.splitlines()):
        stripped = line.strip()
        if line.startswith("  ") and not line.startswith("   ") and ":" in stripped:
            lines.setdefault(stripped.split(":")[0].strip(), first_line + offset)
    return lines


def section(text: str, name: str, where: str) -> tuple[dict, dict[str, int]]:
    # Imported here: importing from `xllm.processing` loads the processor, and this module stays light.
    from xllm.processing.prompt_formats_xllm import lavis_yaml_sections

    sections = lavis_yaml_sections(text)
    if name not in sections:
        return {}, {}
    first_line, block = sections[name]
    try:
        parsed = yaml.safe_load(block) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"The `{name}:` block of {where} is not valid yaml: {error}") from error
    return parsed.get(name) or {}, key_lines(block, first_line)


def decoding_from_lavis_config(text: str, where: str) -> dict:
    """The decoding a LAVIS eval config gets: `{"lavis_task", "method", "generation", "sources", "ignored"}`.

    `generation` holds our `generate` keywords; `sources` says for each where its value comes from
    (`where:line` of the yaml, or the LAVIS line of the default); `ignored` lists decoding keys of the
    yaml's `run:` block that the task never reads, with their values and lines.
    """
    run, run_lines = section(text, "run", where)
    model, model_lines = section(text, "model", where)
    task = run.get("task")
    kind = "qa" if task in QA_TASKS else task
    if kind not in RUN_KEYS:
        raise ValueError(
            f"{where}: `run.task` must be one of {sorted([*QA_TASKS, 'captioning', 'multimodal_classification'])}, "
            f"got {task!r}."
        )
    generation, sources = {}, {}
    for key, (keyword, default, default_at) in RUN_KEYS[kind].items():
        if key in run:
            generation[keyword], sources[keyword] = run[key], f"{where}:{run_lines[key]}"
        else:
            generation[keyword], sources[keyword] = default, default_at
    for keyword, (value, at) in FIXED[kind].items():
        generation[keyword], sources[keyword] = value, at
    for keyword in ("length_penalty", "repetition_penalty"):
        if keyword in generation:
            generation[keyword] = float(generation[keyword])
    read = set(RUN_KEYS[kind])
    ignored = {
        key: {"value": run[key], "line": f"{where}:{run_lines[key]}"}
        for key in ("num_beams", "max_len", "min_len", "length_penalty", "repetition_penalty")
        if key in run and key not in read
    }
    method = "generate"
    if kind == "multimodal_classification" and not model.get("predict_with_gen", False):
        method = "rank"  # blip2_vicuna_xinstruct.py:1631 generates only with predict_with_gen
        sources["method"] = f"{MODEL_FILE}:2228 (predict_with_gen default False)"
        if "predict_with_gen" in model:
            sources["method"] = f"{where}:{model_lines['predict_with_gen']}"
    return {
        "lavis_task": task,
        "method": method,
        "generation": generation,
        "sources": sources,
        "ignored": ignored,
    }


def inputs_from_lavis_config(text: str, where: str) -> dict:
    """What the config builds as the model's input (`lavis_eval_config`): its prompt format (a processor's
    `prompt_format` dict), video frames and audio windows; `{"unavailable": why}` for a config the `lavis` format
    cannot express."""
    import warnings

    from xllm.processing.prompt_formats_xllm import lavis_eval_config, parse_lavis_yaml

    with warnings.catch_warnings():  # the invalid published yamls are read section by section, as designed
        warnings.simplefilter("ignore")
        config = parse_lavis_yaml(text, where)
    try:
        evaluation = lavis_eval_config(config)
    except ValueError as error:
        return {"unavailable": str(error)}
    return {
        "prompt_format": evaluation.prompt_format.to_dict(),
        "num_video_frames": evaluation.num_video_frames,
        "num_audio_windows": evaluation.num_audio_windows,
    }


def lavis_config_row(text: str, where: str) -> dict:
    """One row of the table: a LAVIS eval config's decoding and its `inputs`."""
    return {**decoding_from_lavis_config(text, where), "inputs": inputs_from_lavis_config(text, where)}


def decoding_table(configs: dict[str, str]) -> dict[str, dict]:
    """The table over LAVIS eval configs given as {path under `eval/` without `.yaml`: yaml text}."""
    return {name: lavis_config_row(text, f"{name}.yaml") for name, text in sorted(configs.items())}


@cache
def lavis_decoding_table() -> dict[str, dict]:
    """The shipped table: every X-InstructBLIP eval config of LAVIS (`lavis_decoding.json`)."""
    return json.loads(TABLE_PATH.read_text())["configs"]


def lavis_decoding(name_or_path: str | Path) -> dict:
    """One row: by name in the shipped table (`discrn/audio_video_describe`), or read from a yaml file."""
    table = lavis_decoding_table()
    name = str(name_or_path).removesuffix(".yaml")
    if name in table:
        return table[name]
    path = Path(name_or_path)
    if path.is_file():
        return lavis_config_row(path.read_text(), str(path))
    raise ValueError(
        f"A decoding must name a LAVIS eval config of the table (e.g. {next(iter(table))!r}; "
        f"{len(table)} in `xllm.evaluation.decoding.lavis_decoding_table()`) or a yaml file; got {name_or_path!r}."
    )


__all__ = ["decoding_from_lavis_config", "decoding_table", "lavis_decoding", "lavis_decoding_table"]
