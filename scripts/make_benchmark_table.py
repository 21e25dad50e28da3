"""Write README's benchmark table (section "Published benchmarks") from the benchmark registry and the
published-figures table, between its two markers:

    python scripts/make_benchmark_table.py

Run it after adding a benchmark or a published figure; tests/test_benchmark_end_to_end.py checks that the
README's table is the generated one.
"""

from pathlib import Path

from xllm.evaluation.benchmarks import BENCHMARKS
from xllm.evaluation.benchmarks.published import benchmark_table

README = Path(__file__).parents[1] / "README.md"
START, END = "<!-- benchmark table: scripts/make_benchmark_table.py -->", "<!-- end benchmark table -->"


def main() -> None:
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{README} lacks the markers {START!r} and {END!r} of the benchmark table.")
    before, rest = text.split(START)
    after = rest.split(END)[1]
    README.write_text(f"{before}{START}\n{benchmark_table(BENCHMARKS)}{END}{after}")


if __name__ == "__main__":
    main()
