"""`xllm convert`: BLIP-2, InstructBLIP and LAVIS X-InstructBLIP checkpoints into X-LLM folders.

    xllm convert instructblip Salesforce/instructblip-vicuna-7b ./xllm-instructblip-7b
    xllm convert blip2 Salesforce/blip2-opt-2.7b ./xllm-blip2-opt
    xllm convert lavis video_qformer.pth ./xllm-model-video --model ./xllm-model
    xllm convert lavis pc_qformer.pth ./out --model ./x13b --layer-norm lavis_13b_pc_config

Converted folders carry the remote code and a model card. The conversions are in
`xllm/modeling_xllm/convert_instructblip.py` and `convert_lavis.py`.
"""

import argparse

BLIP_KINDS = {
    "instructblip": "A transformers InstructBlipForConditionalGeneration (Hub id or folder).",
    "blip2": "A transformers Blip2ForConditionalGeneration (Hub id or folder).",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser(
        "convert",
        help="Convert BLIP-2 / InstructBLIP / LAVIS checkpoints to X-LLM.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = convert.add_subparsers(dest="source_kind", metavar="SOURCE_KIND", required=True)
    for kind, help_text in BLIP_KINDS.items():
        parser = kinds.add_parser(kind, help=help_text)
        parser.add_argument("source", help="Hub id or local folder of the original model and processor.")
        parser.add_argument("output", help="Folder to write the X-LLM model, processor and card to.")
        parser.add_argument("--dtype", default="auto", help="Weights dtype (default: the checkpoint's).")
        parser.set_defaults(run=run_blip)
    lavis = kinds.add_parser(
        "lavis",
        help="A LAVIS X-InstructBLIP per-modality checkpoint (.pth): a Q-Former or the linear ablation.",
    )
    lavis.add_argument(
        "checkpoint",
        help="The .pth file, a LAVIS runner checkpoint or {'model': ...} (read with torch.load(weights_only=True)).",
    )
    lavis.add_argument("output", help="Folder to write the updated X-LLM model to.")
    lavis.add_argument(
        "--model", required=True, help="Saved X-LLM model whose interface receives the weights."
    )
    lavis.add_argument(
        "--modality",
        default=None,
        help="LAVIS modality of the checkpoint: image, video, audio or pc (default: the file's only one).",
    )
    lavis.add_argument(
        "--layer-norm",
        default="file",
        choices=["file", "lavis_13b_pc_config"],
        help="The encoder LayerNorm: the file's (default), or weight 1 / bias 0 as LAVIS' 13b config leaves pc_ln.",
    )
    lavis.add_argument("--dtype", default="auto", help="Weights dtype (default: the saved model's).")
    lavis.set_defaults(run=run_lavis)


def run_blip(args: argparse.Namespace) -> int:
    from xllm.modeling_xllm.convert_instructblip import convert_blip_checkpoint

    convert_blip_checkpoint(args.source_kind, args.source, args.output, args.dtype)
    print(f"Converted {args.source} into {args.output}")
    return 0


def run_lavis(args: argparse.Namespace) -> int:
    from xllm.modeling_xllm.convert_lavis import convert_lavis_folder

    convert_lavis_folder(args.checkpoint, args.model, args.modality, args.output, args.dtype, args.layer_norm)
    print(f"Loaded the {args.modality or 'only'} interface of {args.checkpoint} into {args.output}")
    return 0
