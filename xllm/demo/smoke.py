"""`xllm demo`: the embedded default, runnable on a laptop CPU with no download.

Until the synthetic-world demo lands (issue 7), the demo builds the tiny random-weight model,
saves it, loads it back through the Auto classes and answers a chat message through
`pipeline("any-to-any")`: the whole save / load / generate path a real checkpoint takes.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from transformers import AutoModelForMultimodalLM, AutoProcessor, pipeline

from ..testing import tiny_model_and_processor


def synthetic_image(seed: int = 0, size: int = 64) -> Image.Image:
    """A red square on a white background, with a little seeded noise."""
    rng = np.random.default_rng(seed)
    pixels = np.full((size, size, 3), 255, dtype=np.uint8)
    pixels[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = (220, 30, 30)
    noise = rng.integers(0, 20, size=pixels.shape, dtype=np.uint8)
    return Image.fromarray(np.clip(pixels.astype(int) - noise, 0, 255).astype(np.uint8))


def run_demo(args: argparse.Namespace) -> int:
    output = Path(args.output) / "model"
    model, processor = tiny_model_and_processor(seed=args.seed)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    print(f"Saved the tiny model and processor to {output}")

    reloaded = AutoModelForMultimodalLM.from_pretrained(output)
    AutoProcessor.from_pretrained(output)
    print(f"Reloaded {type(reloaded).__name__}: {reloaded.trainable_parameter_report()}")

    chat = pipeline("any-to-any", model=str(output))
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": synthetic_image(args.seed)},
                {"type": "text", "text": "describe the image"},
            ],
        }
    ]
    answer = chat(text=messages, max_new_tokens=8, do_sample=False)[0]["generated_text"][-1]["content"]
    print(f"Question: describe the image\nAnswer (random weights, so not meaningful yet): {answer!r}")
    return 0


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="Run the embedded default end to end on the CPU.")
    parser.add_argument(
        "--output", default="runs/demo", help="Folder for the saved model (default: runs/demo)."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run_demo)
