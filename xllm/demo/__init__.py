"""`xllm demo`: the embedded default, runnable on a laptop CPU with no download."""

from .smoke import add_demo_command

__all__ = ["add_demo_command"]
