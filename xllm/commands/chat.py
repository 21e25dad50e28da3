"""`xllm chat MODEL`: talk to a saved model.

xllm chat MODEL "question" --image x.png   # one answer (without a question: "describe it")
xllm chat MODEL -i [--image x.png]         # a multi-turn chat in the terminal, answers streamed
xllm chat MODEL --web                      # a Gradio page on http://127.0.0.1:7860 (the `web` extra)
"""

import argparse

from xllm.processing.processor_modalities import MODALITIES, cli_flag


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chat", help="Talk to a saved model: one question, the terminal, or a web page."
    )
    parser.add_argument("model", help="folder of a saved X-LLM model and processor (e.g. runs/demo/model)")
    parser.add_argument(
        "question", nargs="?", default="describe it", help="the question (default: 'describe it')"
    )
    for modality in MODALITIES:
        parser.add_argument(
            cli_flag(modality),
            dest=modality,
            action="append",
            metavar="PATH",
            default=[],
            help=f"a {modality} file",
        )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="a multi-turn chat in the terminal (/image PATH, /reset, /quit)",
    )
    mode.add_argument(
        "--web", action="store_true", help="a chat page in the browser (needs `pip install x-llm[web]`)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="--web: address to bind (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="--web: port")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    import xllm  # noqa: F401  (registers the X-LLM classes with the Auto classes)
    from xllm.chat.session import ChatSession, GenerationSettings

    media = [(modality, path) for modality in MODALITIES for path in getattr(args, modality)]
    if not media and not (args.interactive or args.web):
        flags = ", ".join(cli_flag(modality) for modality in MODALITIES)
        raise ValueError(f"Give at least one media file ({flags}), or chat with -i or --web.")
    model = AutoModelForMultimodalLM.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    if args.web:
        from xllm.chat.web_page import build_chat_page

        page = build_chat_page(model, processor, max_new_tokens=args.max_new_tokens)
        page.launch(server_name=args.host, server_port=args.port)
        return 0
    session = ChatSession(model, processor, GenerationSettings(max_new_tokens=args.max_new_tokens))
    for modality, path in media:
        session.attach(modality, path)
    if args.interactive:
        from xllm.chat.terminal import chat_in_terminal

        return chat_in_terminal(session)
    print("".join(session.ask(args.question)).strip())
    return 0
