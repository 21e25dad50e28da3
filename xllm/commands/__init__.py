"""The `xllm` subcommands, one module each, all in one shape.

Every module defines `add_parser(subparsers)`, which declares its arguments and sets `run`, and
`run(args) -> int`, which does the work. Modules import only what their arguments need (the modality
tables, task names) at the top, and the rest inside `run`: `xllm --help` and `xllm COMMAND --help`
answer without importing torch. The work itself lives in the library (trainers, evaluation,
converters, the demo, the world); a command parses and calls.
"""
