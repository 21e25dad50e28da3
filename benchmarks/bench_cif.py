"""CIF benchmark: vectorised integrate-and-fire against the sequential reference.

Both run on the same inputs, side by side: the repeats alternate between the two so that a
slowdown of the machine hits both, and each time is the median of its repeats.

    python -m benchmarks.bench_cif [--repeats 5] [--device cpu] [--threads N] [--tiny]
"""

import argparse
import statistics

import torch

from benchmarks.timing import time_ms
from xllm.modeling_xllm.modeling_cif import integrate_and_fire, integrate_and_fire_reference

BATCH_SIZES = (1, 16)
FRAME_COUNTS = (200, 1000)
WIDTH = 512
MAX_ALPHA = 0.5  # sigmoid weights in (0, 0.5): about four frames per token, as after subsampling


@torch.no_grad()
def measure(batch: int, frames: int, repeats: int, device: str) -> dict:
    """Median times of both implementations on one random input, and their largest difference."""
    generator = torch.Generator().manual_seed(batch * frames)
    hidden_states = torch.randn(batch, frames, WIDTH, generator=generator).to(device)
    alphas = (torch.rand(batch, frames, generator=generator) * MAX_ALPHA).to(device)
    embeddings, lengths = integrate_and_fire(hidden_states, alphas)  # warm-up
    expected_embeddings, expected_lengths = integrate_and_fire_reference(hidden_states, alphas)
    if not torch.equal(lengths, expected_lengths):
        raise AssertionError(f"token counts differ: {lengths.tolist()} vs {expected_lengths.tolist()}")
    reference_ms, vectorised_ms = [], []
    for _ in range(repeats):
        reference_ms.append(time_ms(lambda: integrate_and_fire_reference(hidden_states, alphas)))
        vectorised_ms.append(time_ms(lambda: integrate_and_fire(hidden_states, alphas)))
    return {
        "batch": batch,
        "frames": frames,
        "reference_ms": statistics.median(reference_ms),
        "vectorised_ms": statistics.median(vectorised_ms),
        "max_abs_diff": (embeddings - expected_embeddings).abs().max().item(),
    }


def format_table(rows: list[dict]) -> str:
    lines = [
        f"{'batch':>5} {'frames':>6} {'reference ms':>13} {'vectorised ms':>14} {'speed-up':>9} {'max abs diff':>13}"
    ]
    for row in rows:
        speed_up = row["reference_ms"] / row["vectorised_ms"]
        lines.append(
            f"{row['batch']:>5} {row['frames']:>6} {row['reference_ms']:>13.2f} {row['vectorised_ms']:>14.2f}"
            f" {speed_up:>8.1f}x {row['max_abs_diff']:>13.2e}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per implementation and size")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--tiny", action="store_true", help="one small size only (smoke test)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [
        measure(batch, frames, args.repeats, args.device)
        for batch in BATCH_SIZES[: 1 if args.tiny else None]
        for frames in FRAME_COUNTS[: 1 if args.tiny else None]
    ]
    print(
        f"CIF integrate-and-fire, width {WIDTH}, device {args.device}, {torch.get_num_threads()} CPU threads,"
        f" median of {args.repeats} repeats"
    )
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()
