"""`xllm demo`: the embedded default. The whole method, for real, on a synthetic world, on a CPU.

See `pipeline.py` for the phases and `settings.py` for every step budget.
"""

import argparse
from pathlib import Path

from .pipeline import Demo
from .report import write_report
from .settings import DemoSettings


def run_demo(args: argparse.Namespace) -> int:
    settings = DemoSettings(seed=args.seed)
    if args.fast:
        settings = settings.fast()
    output = Path(args.output)
    report = Demo(settings, output).run()
    print("\n" + write_report(report, output))
    print(f"Report: {output / 'report.md'}; model: {report['model']}")
    return 0


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="Train and evaluate the whole method on a synthetic world (CPU)."
    )
    parser.add_argument("--output", default="runs/demo", help="Output folder (default: runs/demo).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fast", action="store_true", help="Images and point clouds only, no ablation (~3 min)."
    )
    parser.set_defaults(run=run_demo)


__all__ = ["Demo", "DemoSettings", "add_demo_command"]
