"""Side-by-side timing shared by the benchmarks.

These machines are noisy: a ratio of two times measured minutes apart says little. So the
contenders run interleaved (A B A B ...), every time is the median of its repeats, and a ratio is
the median of the per-round ratios, so that a slow moment hits both sides of a round.
"""

import math
import statistics
import time
from collections.abc import Callable

import torch


def time_ms(function: Callable[[], object]) -> float:
    """Milliseconds one call takes, waiting for a GPU to finish when one is in use."""
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def interleaved_times(
    functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Milliseconds of each call per round; every round calls each function once, in the given order on
    even rounds and in reverse on odd ones, so that neither side always runs second (measured: with a
    fixed order the processor table read 0.96x by paired rounds while its medians read 1.07x)."""
    if repeats < 1:
        raise ValueError(f"`repeats` must be at least 1, got {repeats}.")
    for _ in range(warmup):
        for function in functions.values():
            function()
    times = {name: [] for name in functions}
    for round_index in range(repeats):
        order = list(functions.items())
        for name, function in order if round_index % 2 == 0 else reversed(order):
            times[name].append(time_ms(function))
    return times


def median_ratio(numerator_ms: list[float], denominator_ms: list[float]) -> float:
    """Median over rounds of numerator / denominator."""
    return statistics.median(a / b for a, b in zip(numerator_ms, denominator_ms, strict=True))


def ratio_interval(
    numerator_ms: list[float], denominator_ms: list[float], confidence: float = 0.95
) -> tuple[float, float]:
    """A distribution-free interval for the median of the per-round ratios numerator / denominator: the
    order statistics x_(k) and x_(n+1-k), with k the largest such that P(Binomial(n, 1/2) < k) <=
    (1 - confidence) / 2. On these machines one round's ratio swings by 10-20%, so a median alone cannot
    tell a 1% gap from noise. Below 6 rounds no such k exists and the extremes are returned."""
    ordered = sorted(a / b for a, b in zip(numerator_ms, denominator_ms, strict=True))
    n = len(ordered)
    if n == 0:
        raise ValueError("The timings must not be empty.")
    tail, below, k = (1 - confidence) / 2, 0.0, 0
    while k < n // 2 and below + math.comb(n, k) / 2**n <= tail:
        below += math.comb(n, k) / 2**n
        k += 1
    k = max(k, 1)
    return ordered[k - 1], ordered[n - k]


def format_table(columns: list[str], rows: list[list]) -> str:
    """A right-aligned text table; floats get three significant decimals."""
    cells = [[f"{value:.3g}" if isinstance(value, float) else str(value) for value in row] for row in rows]
    widths = [max(len(column), *(len(row[i]) for row in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
