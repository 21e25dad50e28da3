"""Greedy generation, tokens per second: X-LLM against transformers' InstructBLIP, same weights.

A batch of 8 prompts with one image each, left-padded by transformers' processor; the X-LLM model
is the converter's output and reads the very same inputs. Both must produce identical tokens.

    python -m benchmarks.bench_generation [--repeats 3] [--tiny]
"""

import argparse
import statistics

import torch

from benchmarks.instructblip_pair import SIZES, instructblip_pair, processors, prompts, random_images
from benchmarks.timing import format_table, interleaved_times, median_ratio, ratio_interval

BATCH = 8


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per prompt")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    size = SIZES["tiny" if args.tiny else "full"]
    original, converted = instructblip_pair(size)
    their_processor, _ = processors(size)
    inputs = their_processor(
        images=random_images(BATCH, size), text=prompts(BATCH), return_tensors="pt", padding=True
    )
    settings = dict(
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        do_sample=False,
        # X-LLM never generates placeholder tokens; InstructBLIP is told the same, so both do one computation.
        suppress_tokens=converted.generation_config.suppress_tokens,
    )
    outputs = {}

    def generator(name, model):
        def generate():
            with torch.inference_mode():
                outputs[name] = model.generate(**inputs, **settings)

        return generate

    times = interleaved_times(
        {"transformers": generator("transformers", original), "xllm": generator("xllm", converted)},
        args.repeats,
    )
    identical = torch.equal(
        outputs["xllm"][:, -args.new_tokens :], outputs["transformers"][:, -args.new_tokens :]
    )
    if not identical:
        raise AssertionError("X-LLM and InstructBLIP generated different greedy tokens")
    tokens = BATCH * args.new_tokens
    speed_ratio = 1 / median_ratio(times["xllm"], times["transformers"])
    low, high = ratio_interval(times["transformers"], times["xllm"])
    rows = [
        {
            "model": name,
            "median_ms": statistics.median(times[name]),
            "tokens_per_s": tokens / (statistics.median(times[name]) / 1000),
            "speed_ratio": speed_ratio if name == "xllm" else 1.0,
        }
        for name in times
    ]
    print(
        f"Greedy generation, batch {BATCH}, {args.new_tokens} new tokens each, image {size['image_size']} px, "
        f"{size['num_queries']} queries, LLM {size['llm_layers']} x {size['llm_width']}; {args.repeats} interleaved "
        f"rounds; identical tokens: {identical}; goal: speed ratio >= 1.0; "
        f"95% interval of the per-round median: {low:.3f}-{high:.3f}"
    )
    print(
        format_table(
            ["model", "median ms", "tokens/s", "speed / transformers"], [list(row.values()) for row in rows]
        )
    )
    return rows


if __name__ == "__main__":
    main()
