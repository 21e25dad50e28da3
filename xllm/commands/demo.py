"""`xllm demo`: the whole method, trained and evaluated on the synthetic world, on a CPU."""

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="Train and evaluate the whole method on a synthetic world (CPU)."
    )
    parser.add_argument("--output", default="runs/demo", help="Output folder (default: runs/demo).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fast", action="store_true", help="Images and point clouds only, no ablation (~3 min)."
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xllm.demo import Demo, DemoSettings, write_demo_report

    settings = DemoSettings(seed=args.seed)
    if args.fast:
        settings = settings.fast()
    output = Path(args.output)
    report = Demo(settings, output).run()
    print("\n" + write_demo_report(report, output))
    print(f"Report: {output / 'report.md'}; model: {report['model']}")
    return 0
