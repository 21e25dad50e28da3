"""`xllm chat MODEL "question" --image ... --audio ...`: ask a saved model about some media files."""

import argparse

from xllm.processing.processor_modalities import MODALITIES, cli_flag


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="Answer a question about media files with a saved model.")
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
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.set_defaults(run=run)


def chat_messages(question: str, media: dict[str, list[str]]) -> list[dict]:
    """One user turn: every media file (in table order), then the question."""
    content = [{"type": modality, "path": path} for modality, paths in media.items() for path in paths]
    content.append({"type": "text", "text": " " + question})
    return [{"role": "user", "content": content}]


def run(args: argparse.Namespace) -> int:
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    import xllm  # noqa: F401  (registers the X-LLM classes with the Auto classes)

    media = {modality: getattr(args, modality) for modality in MODALITIES if getattr(args, modality)}
    if not media:
        flags = ", ".join(cli_flag(modality) for modality in MODALITIES)
        raise ValueError(f"Give at least one media file: {flags}.")
    model = AutoModelForMultimodalLM.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    inputs = processor.apply_chat_template(
        chat_messages(args.question, media), tokenize=True, return_dict=True, add_generation_prompt=True
    )
    output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
    print(processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    return 0
