"""`xllm evaluate`: a saved model on a manifest of the training format; the task's metrics and reports."""

import argparse

from xllm.evaluation.tasks import TASK_NAMES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="Evaluate a saved model on a task's manifest.")
    parser.add_argument("--task", required=True, choices=TASK_NAMES)
    parser.add_argument("--model", required=True, help="folder of a saved X-LLM model and processor")
    parser.add_argument(
        "--data",
        required=True,
        help="manifest of the training format (columns per task: xllm.evaluation.tasks)",
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
    parser.set_defaults(run=run)


def generation_overrides(args: argparse.Namespace) -> dict:
    names = ("num_beams", "max_new_tokens", "min_new_tokens")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def run(args: argparse.Namespace) -> int:
    import json

    from xllm.evaluation.discrn import discrn_task
    from xllm.evaluation.runner import run_evaluation
    from xllm.evaluation.tasks import TASKS

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
