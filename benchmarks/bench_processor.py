"""Processor throughput, examples per second: X-LLM's processor against transformers' InstructBLIP one.

Both wrap the same image processor and tokenizers and turn a batch of 32 image + text examples
into model inputs; ours is asked for InstructBLIP's layout (image tokens, BOS, prompt), and the two
outputs must be identical.

    python -m benchmarks.bench_processor [--repeats 5] [--tiny]
"""

import argparse
import statistics

import torch

from benchmarks.instructblip_pair import SIZES, processors, prompts, random_images, xllm_texts
from benchmarks.timing import format_table, interleaved_times, median_ratio, ratio_interval

BATCH = 32


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    size = SIZES["tiny" if args.tiny else "full"]
    theirs, ours = processors(size)
    images, texts = random_images(BATCH, size), prompts(BATCH)
    our_texts = xllm_texts(texts, ours.tokenizer)
    outputs = {}

    def run_theirs():
        outputs["transformers"] = theirs(images=images, text=texts, return_tensors="pt", padding=True)

    def run_ours():
        outputs["xllm"] = ours(images=images, text=our_texts, instructions=texts, add_special_tokens=False)

    times = interleaved_times({"transformers": run_theirs, "xllm": run_ours}, args.repeats)
    identical = all(
        torch.equal(outputs["xllm"][key], outputs["transformers"][key])
        for key in (
            "input_ids",
            "attention_mask",
            "pixel_values",
            "qformer_input_ids",
            "qformer_attention_mask",
        )
    )
    if not identical:
        raise AssertionError("X-LLM's processor and InstructBlipProcessor gave different inputs")
    speed_ratio = 1 / median_ratio(times["xllm"], times["transformers"])
    low, high = ratio_interval(times["transformers"], times["xllm"])
    rows = [
        {
            "processor": name,
            "median_ms": statistics.median(times[name]),
            "examples_per_s": BATCH / (statistics.median(times[name]) / 1000),
            "speed_ratio": speed_ratio if name == "xllm" else 1.0,
        }
        for name in times
    ]
    print(
        f"Processor, batch of {BATCH} image ({size['image_size']} px) + text examples; {args.repeats} interleaved "
        f"rounds; identical outputs: {identical}; goal: speed ratio >= 1.0; "
        f"95% interval of the per-round median: {low:.3f}-{high:.3f}"
    )
    print(
        format_table(
            ["processor", "median ms", "examples/s", "speed / transformers"],
            [list(row.values()) for row in rows],
        )
    )
    return rows


if __name__ == "__main__":
    main()
