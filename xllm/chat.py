"""`xllm chat MODEL --image ... --audio ... "question"`: ask a saved model about some media."""

import argparse

# CLI flag -> chat content type (DESIGN.md's table of modality names).
MEDIA_FLAGS = {
    "image": "image",
    "video": "video",
    "speech": "speech",
    "audio": "audio",
    "point_cloud": "point_cloud",
}


def build_messages(question: str, media: dict[str, list[str]]) -> list[dict]:
    """One user turn: every media file (in flag order), then the question."""
    content = [{"type": kind, "path": path} for kind, paths in media.items() for path in paths]
    content.append({"type": "text", "text": " " + question})
    return [{"role": "user", "content": content}]


def run_chat(args: argparse.Namespace) -> int:
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    media = {kind: getattr(args, flag) for flag, kind in MEDIA_FLAGS.items() if getattr(args, flag)}
    if not media:
        raise ValueError(
            "Give at least one media file: --image, --video, --speech, --audio or --point-cloud."
        )
    model = AutoModelForMultimodalLM.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    inputs = processor.apply_chat_template(
        build_messages(args.question, media), tokenize=True, return_dict=True, add_generation_prompt=True
    )
    output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
    print(processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    return 0


def add_chat_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chat", help="Answer a question about media files with a saved model.")
    parser.add_argument("model", help="folder of a saved X-LLM model and processor (e.g. runs/demo/model)")
    parser.add_argument(
        "question", nargs="?", default="describe it", help="the question (default: 'describe it')"
    )
    for flag in MEDIA_FLAGS:
        parser.add_argument(
            f"--{flag.replace('_', '-')}", dest=flag, action="append", metavar="PATH", default=[]
        )
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.set_defaults(run=run_chat)
