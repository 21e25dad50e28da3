"""`xllm chat MODEL -i` through a pseudo-terminal: turns with media, `/reset`, `/quit`, streamed answers."""

import os
import pty
import select
import subprocess
import sys
import threading
import time

from media_files import png_bytes
from serving_helpers import reference_answer

from xllm.chat.session import ChatSession, GenerationSettings
from xllm.chat.terminal import chat_in_terminal


class Terminal:
    """The master side of a pseudo-terminal: type lines, read what the program printed."""

    def __init__(self, master: int):
        self.master = master
        self.output = ""

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def read_until(self, marker: str, start: int, timeout: float = 120.0) -> str:
        """Everything printed from `start` up to `marker`, waiting for it."""
        deadline = time.monotonic() + timeout
        while marker not in self.output[start:]:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{marker!r} did not come; the terminal shows {self.output[-500:]!r}"
            self.read_some(remaining)
        end = self.output.index(marker, start)
        return self.output[start:end]

    def read_some(self, timeout: float) -> None:
        if select.select([self.master], [], [], timeout)[0]:
            self.output += os.read(self.master, 4096).decode(errors="replace")

    def answer(self, question: str) -> str:
        """Ask and return the answer line (the terminal echoes the question, then `model> ANSWER`)."""
        start = len(self.output)
        self.type(question)
        self.read_until("model> ", start)
        begin = self.output.index("model> ", start) + len("model> ")
        return self.read_until("\r\nyou> ", begin)


def test_the_interactive_chat_keeps_history_resets_and_quits(saved_tiny_dir, tiny, tmp_path):
    picture = tmp_path / "red.png"
    picture.write_bytes(png_bytes("red"))
    master, slave = pty.openpty()
    command = [sys.executable, "-m", "xllm", "chat", str(saved_tiny_dir), "-i", "--max-new-tokens", "6"]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, env=environment, close_fds=True
    )
    os.close(slave)
    terminal = Terminal(master)
    try:
        terminal.read_until("you> ", 0)
        start = len(terminal.output)
        terminal.type(f"/image {picture}")
        terminal.read_until("(image attached", start)
        first = terminal.answer("what colour is it ?")
        second = terminal.answer("which shape is it ?")
        start = len(terminal.output)
        terminal.type("/reset")
        terminal.read_until("(new conversation)", start)
        third = terminal.answer("describe it")
        terminal.type("/quit")
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        os.close(master)
    with_image = [{"role": "user", "content": [{"type": "image", "image": str(picture)}, {"type": "text", "text": " what colour is it ?"}]}]  # fmt: skip
    assert first == reference_answer(*tiny, with_image, max_tokens=6)[0]
    follow_up = [
        *with_image,
        {"role": "assistant", "content": first},
        {"role": "user", "content": " which shape is it ?"},
    ]
    assert second == reference_answer(*tiny, follow_up, max_tokens=6)[0]
    fresh = [{"role": "user", "content": [{"type": "text", "text": " describe it"}]}]
    assert third == reference_answer(*tiny, fresh, max_tokens=6)[0]


def test_answers_reach_the_terminal_token_by_token_before_they_are_complete(tiny):
    model, processor = tiny
    gate, forwards = threading.Event(), []

    def hold_after_three_tokens(module, args, output):
        forwards.append(1)
        if len(forwards) == 4:  # three tokens are out; the fourth waits until the test has seen them
            gate.wait(60)

    handle = model.register_forward_hook(hold_after_three_tokens)
    master, slave = pty.openpty()
    lines, out = os.fdopen(os.dup(slave), "r"), os.fdopen(slave, "w")
    session = ChatSession(model, processor, GenerationSettings(max_new_tokens=8))
    chat = threading.Thread(target=chat_in_terminal, args=(session, lines, out), daemon=True)
    chat.start()
    terminal = Terminal(master)
    try:
        terminal.read_until("you> ", 0)
        start = len(terminal.output)
        terminal.type("what colour is it ?")
        terminal.read_until("model> ", start)
        begin = terminal.output.index("model> ", start) + len("model> ")
        deadline = time.monotonic() + 60
        while len(forwards) < 4 and time.monotonic() < deadline:  # until generation waits at the fourth token
            terminal.read_some(timeout=0.1)
        terminal.read_some(timeout=0.5)  # everything printed so far
        partial = terminal.output[begin:]
        assert len(forwards) == 4 and not gate.is_set()
        assert partial.strip() and "\n" not in partial  # words are out, the answer is not finished
        gate.set()
        whole = terminal.read_until("\r\nyou> ", begin)
        assert whole.startswith(partial) and len(whole) > len(partial)
        terminal.type("/quit")
        chat.join(30)
    finally:
        gate.set()
        handle.remove()
        os.close(master)
    expected = reference_answer(model, processor, [{"role": "user", "content": [{"type": "text", "text": " what colour is it ?"}]}], max_tokens=8)  # fmt: skip
    assert whole == expected[0]
