"""`xllm augment`: question/answer instruction data from a captioned manifest (query data augmentation)."""

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "augment", help="Question/answer data from a captioned manifest (round trip)."
    )
    parser.add_argument("--data", required=True, help="captioned manifest of the training format")
    parser.add_argument(
        "--model", required=True, help="folder of a local text-generation model (seq2seq or causal)"
    )
    parser.add_argument(
        "--output", required=True, help="JSONL manifest to write (prompt = question, response = answer)"
    )
    parser.add_argument("--limit", type=int, help="use only the first N items")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from xllm.evaluation.query_augmentation import augment_manifest

    augmented, captions = augment_manifest(
        args.data, args.model, args.output, args.limit, args.max_new_tokens
    )
    print(f"{len(augmented)} question/answer pairs kept out of {captions} captions, written to {args.output}")
    return 0
