"""`xllm chat MODEL -i`: a multi-turn chat in the terminal, answers printed as they are generated.

A line is a question; a line starting with `/` is a command: `/image PATH` (and `/video`, `/speech`,
`/audio`, `/point_cloud`: one per modality the model has) attaches a file to the next question,
`/reset` starts a new conversation, `/quit` (or end of input) leaves.
"""

import sys
from typing import TextIO

from .session import ChatSession

PROMPT = "you> "
ANSWER = "model> "


def help_text(session: ChatSession) -> str:
    attach = " ".join(f"/{modality} PATH" for modality in session.modalities)
    return f"Commands: {attach} (attach to the next question), /reset, /quit."


def chat_in_terminal(session: ChatSession, lines: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """Run the conversation until `/quit` or the end of `lines`; answers stream to `out` token by token."""
    out.write(f"Chatting with the model. {help_text(session)}\n")
    while True:
        out.write(PROMPT)
        out.flush()
        line = lines.readline()
        if not line:  # end of input
            out.write("\n")
            return 0
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not run_command(session, line, out):
                return 0
            continue
        out.write(ANSWER)
        try:
            for piece in session.ask(line):
                out.write(piece)
                out.flush()
        except ValueError as error:  # a file that does not decode, a prompt too long: say so, keep chatting
            out.write(f"\nerror: {error}")
            session.attached = []
        out.write("\n")


def run_command(session: ChatSession, line: str, out: TextIO) -> bool:
    """Carry out one `/command`; False means leave."""
    command, _, argument = line[1:].partition(" ")
    if command in ("quit", "exit"):
        return False
    if command == "reset":
        session.reset()
        out.write("(new conversation)\n")
    elif command == "help":
        out.write(help_text(session) + "\n")
    else:
        try:
            session.attach(command, argument.strip())
            out.write(f"({command} attached: {argument.strip()})\n")
        except ValueError as error:
            out.write(f"error: {error} {help_text(session)}\n")
    return True


__all__ = ["chat_in_terminal"]
