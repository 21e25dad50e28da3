"""`xllm evaluate`: a saved model on a manifest of the training format (`--task`, `--data`) or on a published
benchmark's own files (`--benchmark`, `--annotations`, `--media-dir`); the task's metrics and reports."""

import argparse
from pathlib import Path

from xllm.evaluation.benchmarks import BENCHMARKS
from xllm.evaluation.benchmarks.published import published_presets
from xllm.evaluation.tasks import TASK_NAMES

BENCHMARK_ARGUMENTS = ("benchmark", "annotations", "media_dir")
MANIFEST_ARGUMENTS = ("task", "data")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="Evaluate a saved model on a task's manifest or on a published benchmark."
    )
    parser.add_argument(
        "--task", choices=TASK_NAMES, help="with --data: the task the manifest is evaluated on"
    )
    parser.add_argument("--model", required=True, help="folder of a saved X-LLM model and processor")
    parser.add_argument(
        "--data", help="manifest of the training format (columns per task: xllm.evaluation.tasks)"
    )
    parser.add_argument(
        "--benchmark",
        choices=sorted(BENCHMARKS),
        help="a published benchmark read from its own annotation files (README: Published benchmarks)",
    )
    parser.add_argument(
        "--annotations", type=Path, help="--benchmark: its annotation file, or the folder holding its files"
    )
    parser.add_argument(
        "--media-dir",
        type=Path,
        help="--benchmark: the folder its media are found in, by the dataset's naming",
    )
    parser.add_argument(
        "--preset",
        choices=published_presets(),
        help="--benchmark: show the paper's figure of this preset beside the score (and take its decoding)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="--benchmark: read LAVIS's pickled point cloud files (unsafe: pickles run code)",
    )
    parser.add_argument(
        "--lavis-references",
        action="store_true",
        help="--benchmark: score against the references LAVIS scores against (AudioCaps: the first caption only; "
        "default: every reference)",
    )
    parser.add_argument(
        "--output",
        default="evaluation",
        help="folder for report.json, report.md, predictions.jsonl (and --benchmark's resume cache.jsonl)",
    )
    parser.add_argument("--limit", type=int, help="evaluate only the first N items")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", help="torch device; default: cuda when available, else cpu")
    parser.add_argument(
        "--decoding",
        help="decoding of a LAVIS eval config: its name in the shipped table (e.g. vicuna7b/image/okvqa_qa, "
        "discrn/image_3d_describe; xllm.evaluation.decoding) or a LAVIS yaml file; default: the task's "
        "(xllm.evaluation.tasks.DECODING_CONFIGS)",
    )
    parser.add_argument(
        "--classify-by",
        choices=("generation", "likelihood"),
        help="classification only: generate an answer, or rank every class by the LLM's log-likelihood "
        "(LAVIS _predict_class); default: generation, or what --decoding's config does",
    )
    parser.add_argument(
        "--candidates-per-forward",
        type=int,
        help="--classify-by likelihood: candidates scored per forward (default: all classes at once)",
    )
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


def generation_overrides(args: argparse.Namespace, decoding: dict | None) -> dict:
    """--decoding's settings, then the single settings given on the command line."""
    names = ("num_beams", "max_new_tokens", "min_new_tokens")
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return {**(decoding["generation"] if decoding else {}), **given}


def chosen_task(args: argparse.Namespace, decoding: dict | None):
    from xllm.evaluation.discrn import discrn_task
    from xllm.evaluation.tasks import LIKELIHOOD_CLASSIFICATION, TASKS

    if args.caption_baseline and args.task != "discrn":
        raise ValueError(f"--caption-baseline applies to --task discrn only, got --task {args.task}")
    if (args.classify_by or args.candidates_per_forward) and args.task != "classification":
        raise ValueError(
            f"--classify-by and --candidates-per-forward apply to --task classification only, got --task {args.task}"
        )
    if args.task == "discrn":
        return discrn_task(args.caption_baseline)
    classify_by = args.classify_by or (
        "likelihood" if decoding and decoding["method"] == "rank" else "generation"
    )
    if args.task == "classification" and classify_by == "likelihood":
        return LIKELIHOOD_CLASSIFICATION
    return TASKS[args.task]


def run(args: argparse.Namespace) -> int:
    given = [name for name in (*BENCHMARK_ARGUMENTS, *MANIFEST_ARGUMENTS) if getattr(args, name) is not None]
    if args.benchmark is not None:
        missing = [
            f"--{name.replace('_', '-')}" for name in BENCHMARK_ARGUMENTS if getattr(args, name) is None
        ]
        extra = [f"--{name}" for name in MANIFEST_ARGUMENTS if getattr(args, name) is not None]
        if missing or extra:
            raise ValueError(
                f"--benchmark needs --annotations and --media-dir, without --task/--data; missing {missing}, "
                f"extra {extra}."
            )
        return run_benchmark_command(args)
    if args.task is None or args.data is None:
        raise ValueError(
            "xllm evaluate needs --task and --data (a manifest), or --benchmark, --annotations and --media-dir; "
            f"got {['--' + name.replace('_', '-') for name in given] or 'neither'}."
        )
    benchmark_only = [
        f"--{n}"
        for n in ("preset", "allow_pickle", "lavis_references")
        if getattr(args, n) not in (None, False)
    ]
    if benchmark_only:
        raise ValueError(f"{benchmark_only} apply to --benchmark runs only.")
    return run_manifest_command(args)


def run_benchmark_command(args: argparse.Namespace) -> int:
    import json

    from xllm.evaluation.benchmarks import ImportOptions, benchmark_named
    from xllm.evaluation.benchmarks.runner import BenchmarkRun, run_benchmark

    report = run_benchmark(
        BenchmarkRun(
            benchmark=benchmark_named(args.benchmark),
            annotations=args.annotations,
            media_dir=args.media_dir,
            model=Path(args.model),
            output_dir=Path(args.output),
            preset=args.preset,
            limit=args.limit,
            options=ImportOptions(allow_pickle=args.allow_pickle, lavis_references=args.lavis_references),
            batch_size=args.batch_size,
            decoding=args.decoding,
            generation_overrides=generation_overrides(args, None),
            classify_by=args.classify_by,
            caption_baseline=args.caption_baseline,
            candidates_per_forward=args.candidates_per_forward,
            device=args.device,
        )
    )
    print(
        json.dumps(
            {"metrics": report["metrics"], "scored": report["scored"], "failed": report["failed"]}, indent=2
        )
    )
    return 0 if report["scored"] else 1


def run_manifest_command(args: argparse.Namespace) -> int:
    import json

    from xllm.evaluation.decoding import lavis_decoding
    from xllm.evaluation.runner import run_evaluation

    decoding = lavis_decoding(args.decoding) if args.decoding else None
    task = chosen_task(args, decoding)
    report = run_evaluation(
        task,
        args.model,
        args.data,
        args.output,
        limit=args.limit,
        batch_size=args.batch_size,
        generation_overrides=generation_overrides(args, decoding),
        device=args.device,
        allow_outside_root=args.allow_outside_root,
        candidates_per_forward=args.candidates_per_forward,
    )
    print(json.dumps(report["metrics"], indent=2))
    return 0
