"""The `xllm` command line: one subcommand per user task, each a module of `xllm/commands/`."""

import argparse

from .commands import augment, cache_features, chat, convert, demo, discrn, evaluate, serve, train, world

COMMANDS = (demo, train, cache_features, evaluate, discrn, augment, world, convert, chat, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xllm", description="X-LLM: connect frozen encoders to a frozen LLM."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.run(args)
