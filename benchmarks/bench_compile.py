"""`torch.compile` of a Q-Former interface: eager against the default backend (inductor).

Inductor generates and compiles C++ for the CPU, which can take minutes on a small machine, so the
whole measurement runs in a child process with a time limit; past it, the benchmark prints a note
instead of figures. The interface is the InstructBLIP-layout one of the other benchmarks (32
queries reading 257 encoder tokens, with a 6-token instruction), inference, batch 8.

    python -m benchmarks.bench_compile [--repeats 5] [--timeout 300] [--tiny]
"""

import argparse
import statistics
import time
from multiprocessing import get_context

import torch

from benchmarks.instructblip_pair import SIZES, instructblip_pair
from benchmarks.timing import format_table, interleaved_times, median_ratio

BATCH = 8
INSTRUCTION_LENGTH = 6


def interface_and_inputs(size: dict) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    _, model = instructblip_pair(size)
    interface = model.model.interfaces["image"].eval()
    tokens = (size["image_size"] // size["patch_size"]) ** 2 + 1
    generator = torch.Generator().manual_seed(0)
    encoder_states = torch.randn(BATCH, tokens, size["vision_width"], generator=generator)
    instruction_ids = torch.randint(
        5, interface.config.vocab_size, (BATCH, INSTRUCTION_LENGTH), generator=generator
    )
    return interface, (encoder_states, instruction_ids, torch.ones_like(instruction_ids))


def measure(size_name: str, repeats: int, results) -> None:
    """Child process: compile, check the outputs, time both; the row goes back through `results`."""
    interface, inputs = interface_and_inputs(SIZES[size_name])
    compiled = torch.compile(interface)
    with torch.inference_mode():
        start = time.perf_counter()
        compiled_output = compiled(*inputs)
        compile_seconds = time.perf_counter() - start
        max_abs_diff = (compiled_output - interface(*inputs)).abs().max().item()
        times = interleaved_times(
            {"eager": lambda: interface(*inputs), "inductor": lambda: compiled(*inputs)}, repeats
        )
    results.put(
        {
            "compile_s": compile_seconds,
            "eager_ms": statistics.median(times["eager"]),
            "inductor_ms": statistics.median(times["inductor"]),
            "speed_up": 1 / median_ratio(times["inductor"], times["eager"]),
            "max_abs_diff": max_abs_diff,
        }
    )


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table (or why there is none) and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed for compiling and timing")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    context = get_context("spawn")
    results = context.Queue()
    child = context.Process(target=measure, args=("tiny" if args.tiny else "full", args.repeats, results))
    child.start()
    child.join(args.timeout)
    if child.is_alive():
        child.kill()
        child.join()
        print(
            f"torch.compile (inductor) of the Q-Former interface: skipped, not done within {args.timeout:.0f} s."
        )
        return []
    if child.exitcode != 0:
        print(
            f"torch.compile (inductor) of the Q-Former interface: failed (child exit code {child.exitcode})."
        )
        return []
    row = results.get(timeout=10)
    print(
        f"torch.compile of the Q-Former interface, inference, batch {BATCH}; default backend (inductor) vs eager; "
        f"{args.repeats} interleaved rounds; outputs agree to {row['max_abs_diff']:.1e}"
    )
    columns = ["first call (compile) s", "eager ms", "inductor ms", "speed-up"]
    print(format_table(columns, [list(row.values())[:4]]))
    return [row]


if __name__ == "__main__":
    main()
