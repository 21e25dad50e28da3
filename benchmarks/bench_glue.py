"""Glue overhead: XLLMForConditionalGeneration's forward against its parts called by hand.

The by-hand path runs the vision encoder, the Q-Former interface and the LLM directly on the same
inputs, with one boolean-mask assignment for the placeholders: whatever the full forward costs on
top of that (input checks, placeholder bookkeeping, output dataclasses) is the package's glue.

    python -m benchmarks.bench_glue [--repeats 5] [--tiny]
"""

import argparse
import statistics

import torch

from benchmarks.instructblip_pair import SIZES, instructblip_pair, processors, prompts, random_images
from benchmarks.timing import format_table, interleaved_times, median_ratio
from xllm.modeling_xllm import XLLMForConditionalGeneration

BATCH = 8


def forward_by_hand(model: XLLMForConditionalGeneration, inputs: dict) -> torch.Tensor:
    """Encoder -> interface -> placeholders -> LLM -> head, with none of the model's checks."""
    encoder_states = model.model.encoder_for("image")(
        inputs["pixel_values"], output_hidden_states=True
    ).hidden_states[-1]  # (images, encoder tokens, encoder width): CLS kept, as the converter configures
    queries = model.model.interfaces["image"](
        encoder_states, inputs["qformer_input_ids"], inputs["qformer_attention_mask"]
    )  # (images, queries, llm width)
    inputs_embeds = model.get_input_embeddings()(inputs["input_ids"])  # (batch, seq, llm width)
    inputs_embeds[inputs["input_ids"] == model.config.image_token_id] = queries.flatten(0, 1)
    hidden_states = model.model.language_model(
        inputs_embeds=inputs_embeds, attention_mask=inputs["attention_mask"]
    ).last_hidden_state
    return model.lm_head(hidden_states)  # (batch, seq, vocab)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    size = SIZES["tiny" if args.tiny else "full"]
    _, model = instructblip_pair(size)
    their_processor, _ = processors(size)
    inputs = dict(
        their_processor(images=random_images(BATCH, size), text=prompts(BATCH), return_tensors="pt")
    )
    logits = {}

    def full_forward():
        with torch.inference_mode():
            logits["model"] = model(**inputs).logits

    def parts_by_hand():
        with torch.inference_mode():
            logits["by hand"] = forward_by_hand(model, inputs)

    times = interleaved_times({"by hand": parts_by_hand, "model": full_forward}, args.repeats)
    max_abs_diff = (logits["model"] - logits["by hand"]).abs().max().item()
    if max_abs_diff > 1e-5:
        raise AssertionError(f"the forward and the by-hand path differ by {max_abs_diff:.2e}")
    ratio = median_ratio(times["model"], times["by hand"])
    rows = [
        {
            "path": name,
            "median_ms": statistics.median(times[name]),
            "ratio": ratio if name == "model" else 1.0,
        }
        for name in times
    ]
    print(
        f"Glue overhead, forward of {BATCH} image + text samples (image {size['image_size']} px, "
        f"{size['num_queries']} queries, LLM {size['llm_layers']} x {size['llm_width']}); {args.repeats} interleaved "
        f"rounds; logits agree to {max_abs_diff:.1e}; goal: ratio <= 1.05"
    )
    print(format_table(["path", "median ms", "time / by hand"], [list(row.values()) for row in rows]))
    return rows


if __name__ == "__main__":
    main()
