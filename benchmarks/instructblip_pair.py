"""One random-weight transformers InstructBLIP and its X-LLM conversion, for side-by-side benchmarks.

The X-LLM model comes out of `convert_blip_model`, so both compute the same thing with the same
weights; the X-LLM processor is built from the same image processor and tokenizers.
"""

import numpy as np
import torch
from transformers import (
    BlipImageProcessor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
)

from xllm.modeling_xllm import XLLMForConditionalGeneration
from xllm.modeling_xllm.convert_instructblip import convert_blip_model
from xllm.processing import XLLMProcessor, XLLMVideoProcessor
from xllm.testing import tiny_qformer_tokenizer, tiny_tokenizer

SIZES = {
    # A ViT with ViT-g's token layout (224 px, 14 px patches: 257 tokens), a 32-query Q-Former and a
    # small Llama: big enough that the work, not Python, dominates; small enough for 2 CPU cores.
    "full": dict(
        image_size=224, patch_size=14, vision_width=256, vision_layers=4, qformer_width=256, qformer_layers=4,
        num_queries=32, llm_width=512, llm_layers=4,
    ),
    "tiny": dict(
        image_size=32, patch_size=8, vision_width=32, vision_layers=2, qformer_width=32, qformer_layers=2,
        num_queries=4, llm_width=32, llm_layers=2,
    ),
}  # fmt: skip
# Prompts of one token length: transformers' InstructBLIP passes no position ids to its LLM, so a
# left-padded row would be shifted by its padding there and not in X-LLM (which counts positions from
# the first real token); equal lengths keep the greedy comparison about the same computation.
PROMPTS = tuple(
    f"is the {colour} {shape} small ?"
    for colour in ("red", "green", "blue", "yellow")
    for shape in ("circle", "square")
)


def randomize_(model: torch.nn.Module) -> None:
    """Unit-scale weights, LayerNorm gains near 1: random models whose outputs are far from constant."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
            if "norm" in name.lower() and name.endswith("weight"):
                parameter.add_(1.0)


def instructblip_model(size: dict) -> InstructBlipForConditionalGeneration:
    tokenizer = tiny_tokenizer()
    heads = 4
    config = InstructBlipConfig(
        vision_config=dict(
            hidden_size=size["vision_width"],
            intermediate_size=4 * size["vision_width"],
            num_hidden_layers=size["vision_layers"],
            num_attention_heads=heads,
            image_size=size["image_size"],
            patch_size=size["patch_size"],
            layer_norm_eps=1e-5,  # our interface's encoder LayerNorm eps: outputs match exactly
        ),
        qformer_config=dict(
            hidden_size=size["qformer_width"],
            intermediate_size=4 * size["qformer_width"],
            num_hidden_layers=size["qformer_layers"],
            num_attention_heads=heads,
            vocab_size=len(tiny_qformer_tokenizer()),
            max_position_embeddings=64,
        ),
        text_config=dict(
            model_type="llama",
            hidden_size=size["llm_width"],
            intermediate_size=4 * size["llm_width"],
            num_hidden_layers=size["llm_layers"],
            num_attention_heads=heads,
            num_key_value_heads=heads,
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        num_query_tokens=size["num_queries"],
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    model = InstructBlipForConditionalGeneration(config).eval()
    randomize_(model)
    return model


def processors(size: dict) -> tuple[InstructBlipProcessor, XLLMProcessor]:
    """transformers' processor and ours over the same image processor and tokenizers, left padding."""
    image_processor = BlipImageProcessor(size={"height": size["image_size"], "width": size["image_size"]})
    tokenizer, qformer_tokenizer = tiny_tokenizer(), tiny_qformer_tokenizer()
    tokenizer.padding_side = "left"
    theirs = InstructBlipProcessor(
        image_processor, tokenizer, qformer_tokenizer, num_query_tokens=size["num_queries"]
    )
    ours = XLLMProcessor(
        image_processor=image_processor,
        video_processor=XLLMVideoProcessor(size=image_processor.size),
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        num_query_tokens={"image": size["num_queries"]},
        padding_side="left",
    )
    return theirs, ours


def instructblip_pair(
    size: dict,
) -> tuple[InstructBlipForConditionalGeneration, XLLMForConditionalGeneration]:
    original = instructblip_model(size)
    return original, convert_blip_model(original)


def random_images(count: int, size: dict) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    side = size["image_size"]
    return [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(count)]


def prompts(count: int) -> list[str]:
    return [PROMPTS[index % len(PROMPTS)] for index in range(count)]


def xllm_texts(texts: list[str], tokenizer) -> list[str]:
    """Our processor's text for InstructBLIP's input layout: image tokens first, then the tokenized
    prompt (with BOS where the tokenizer adds one); to be called with `add_special_tokens=False`."""
    adds_bos = tokenizer("a")["input_ids"][0] == tokenizer.bos_token_id
    bos = tokenizer.bos_token if adds_bos else ""
    return [f"<image>{bos}{text}" for text in texts]
