"""`python -m benchmarks` (`make bench`): every benchmark of issue 9, one table each.

Each benchmark is also a module of its own (`python -m benchmarks.bench_qformer --help`). Extra
arguments are not forwarded: run a single module to change its settings.
"""

import time

from benchmarks import (
    bench_cif,
    bench_compile,
    bench_feature_cache,
    bench_generation,
    bench_glue,
    bench_processor,
    bench_qformer,
    bench_serving,
    bench_speech,
    bench_training,
)

BENCHMARKS = {
    "1. CIF": bench_cif,
    "2. Q-Former forward+backward vs transformers": bench_qformer,
    "3. glue overhead": bench_glue,
    "4. generation vs transformers": bench_generation,
    "5. processor vs transformers": bench_processor,
    "6. stage-2 training step": bench_training,
    "7. speech compression": bench_speech,
    "8. torch.compile": bench_compile,
    "9. stage-2 step from cached encoder features": bench_feature_cache,
    "10. serving: 8 concurrent clients vs 1": bench_serving,
}


def main() -> None:
    started = time.perf_counter()
    for title, module in BENCHMARKS.items():
        print(f"\n== {title} ==")
        start = time.perf_counter()
        module.main([])
        print(f"({time.perf_counter() - start:.0f} s)")
    print(f"\nAll benchmarks: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
