"""`xllm convert`: bring BLIP-2, InstructBLIP and LAVIS X-InstructBLIP checkpoints into X-LLM.

    xllm convert instructblip Salesforce/instructblip-vicuna-7b ./xllm-instructblip-7b
    xllm convert blip2 Salesforce/blip2-opt-2.7b ./xllm-blip2-opt
    xllm convert lavis video_qformer.pth --modality video --model ./xllm-model ./xllm-model-video

Converted folders carry the remote code and a model card (see `xllm.hub.save_for_hub`).
"""

import argparse
import copy
from pathlib import Path

from transformers import (
    AutoModelForMultimodalLM,
    AutoProcessor,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    ProcessorMixin,
)

from xllm.hub import save_for_hub
from xllm.modeling_xllm import XLLMConfig
from xllm.modeling_xllm.convert_instructblip import convert_blip_model
from xllm.modeling_xllm.convert_lavis import LAVIS_MODALITIES, load_lavis_interface
from xllm.processing import XLLMProcessor, XLLMVideoProcessor

BLIP_CLASSES = {
    "instructblip": (InstructBlipForConditionalGeneration, InstructBlipProcessor),
    "blip2": (Blip2ForConditionalGeneration, Blip2Processor),
}


def convert_blip_processor(processor: ProcessorMixin, config: XLLMConfig) -> XLLMProcessor:
    """An XLLMProcessor reusing a Blip2Processor's / InstructBlipProcessor's image processor and tokenizers.

    Frames of videos get the image processor's size and normalisation. BLIP-2 has no Q-Former
    tokenizer because its Q-Former reads no text; a copy of the LLM tokenizer stands in (one object
    in two roles breaks `save_pretrained`), and the converted interface, which is not
    instruction-aware, ignores what it produces.
    """
    image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    if image_token_id != config.image_token_id:
        raise ValueError(
            f"The processor's tokenizer maps '<image>' to {image_token_id} but the model's `image_token_id` is "
            f"{config.image_token_id}; the processor does not belong to this checkpoint."
        )
    image_processor = processor.image_processor
    video_processor = XLLMVideoProcessor(
        size=dict(image_processor.size),
        image_mean=image_processor.image_mean,
        image_std=image_processor.image_std,
        num_frames=config.num_video_frames,
    )
    return XLLMProcessor(
        image_processor=image_processor,
        video_processor=video_processor,
        tokenizer=processor.tokenizer,
        qformer_tokenizer=getattr(processor, "qformer_tokenizer", None) or copy.deepcopy(processor.tokenizer),
        num_query_tokens={"image": config.image_interface_config.num_query_tokens},
    )


def run_blip(args: argparse.Namespace) -> int:
    model_class, processor_class = BLIP_CLASSES[args.source_kind]
    original = model_class.from_pretrained(args.source, dtype=args.dtype)
    model = convert_blip_model(original)
    processor = convert_blip_processor(processor_class.from_pretrained(args.source), model.config)
    base_models = None if Path(args.source).exists() else [args.source]
    save_for_hub(model, processor, args.output, base_models=base_models)
    print(f"Converted {args.source} into {args.output}")
    return 0


def run_lavis(args: argparse.Namespace) -> int:
    model = AutoModelForMultimodalLM.from_pretrained(args.model, dtype=args.dtype)
    load_lavis_interface(model, args.checkpoint, args.modality)
    save_for_hub(model, AutoProcessor.from_pretrained(args.model), args.output)
    print(f"Loaded the {args.modality} interface of {args.checkpoint} into {args.output}")
    return 0


def add_convert_command(subparsers) -> None:
    """Register `xllm convert {instructblip,blip2,lavis}`; each sets `args.run(args) -> int`."""
    convert = subparsers.add_parser(
        "convert", help="Convert BLIP-2 / InstructBLIP / LAVIS checkpoints to X-LLM."
    )
    kinds = convert.add_subparsers(dest="source_kind", metavar="SOURCE_KIND", required=True)
    for kind, (model_class, _) in BLIP_CLASSES.items():
        parser = kinds.add_parser(kind, help=f"A transformers {model_class.__name__} (Hub id or folder).")
        parser.add_argument("source", help="Hub id or local folder of the original model and processor.")
        parser.add_argument("output", help="Folder to write the X-LLM model, processor and card to.")
        parser.add_argument("--dtype", default="auto", help="Weights dtype (default: the checkpoint's).")
        parser.set_defaults(run=run_blip)
    lavis = kinds.add_parser("lavis", help="A LAVIS X-InstructBLIP per-modality Q-Former checkpoint (.pth).")
    lavis.add_argument("checkpoint", help="The .pth file (read with torch.load(weights_only=True)).")
    lavis.add_argument("output", help="Folder to write the updated X-LLM model to.")
    lavis.add_argument(
        "--model", required=True, help="Saved X-LLM model whose interface receives the weights."
    )
    lavis.add_argument(
        "--modality", required=True, choices=sorted(LAVIS_MODALITIES), help="LAVIS modality name."
    )
    lavis.add_argument("--dtype", default="auto", help="Weights dtype (default: the saved model's).")
    lavis.set_defaults(run=run_lavis)


__all__ = ["add_convert_command", "convert_blip_processor"]
