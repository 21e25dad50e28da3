"""Talking to a model: `session.py` (a conversation, streamed answers), `terminal.py` (`xllm chat -i`),
`web_page.py` (`xllm chat --web`, a Gradio page; needs the `web` extra)."""
