"""The published benchmarks `xllm evaluate --benchmark NAME` runs: one registry over the importer families.

Each family module (`images`, `videos`, ...) exports `BENCHMARKS: tuple[Benchmark, ...]`; `BENCHMARKS` here
maps every name to its `Benchmark`. Importing this package reads no data and imports neither torch nor
`datasets` (the command line builds its `--benchmark` choices from it).
"""

from . import audio, discrn, images, point_clouds, speech, videos
from .benchmark import Benchmark, ImportOptions

FAMILIES = (images, videos, audio, point_clouds, speech, discrn)


def collect(families) -> dict[str, Benchmark]:
    """Name -> benchmark over the families' `BENCHMARKS`; a name given twice is refused."""
    registry: dict[str, Benchmark] = {}
    for family in families:
        for benchmark in family.BENCHMARKS:
            if benchmark.name in registry:
                raise ValueError(
                    f"Benchmark name {benchmark.name!r} is registered twice ({family.__name__})."
                )
            registry[benchmark.name] = benchmark
    return registry


BENCHMARKS: dict[str, Benchmark] = collect(FAMILIES)


def benchmark_named(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"--benchmark must be one of {sorted(BENCHMARKS)}, got {name!r}.")
    return BENCHMARKS[name]


__all__ = ["BENCHMARKS", "Benchmark", "ImportOptions", "benchmark_named"]
