"""The `xllm` command line: one sub-command per user task."""

import argparse

from .chat import add_chat_command
from .conversion_cli import add_convert_command
from .demo import add_demo_command
from .evaluation.cli import add_evaluation_commands
from .trainers.cli import add_train_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xllm", description="X-LLM: connect frozen encoders to a frozen LLM."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_demo_command(subparsers)
    add_train_command(subparsers)
    add_evaluation_commands(subparsers)
    add_convert_command(subparsers)
    add_chat_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.run(args)
