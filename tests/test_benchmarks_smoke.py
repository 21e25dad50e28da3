"""Every benchmark runs at tiny sizes (so they do not rot), and `torch.compile` handles an interface."""

import pytest
import torch

from benchmarks import (
    bench_cif,
    bench_feature_cache,
    bench_generation,
    bench_glue,
    bench_processor,
    bench_qformer,
    bench_serving,
    bench_speech,
    bench_training,
)
from benchmarks.timing import format_table, interleaved_times, median_ratio
from xllm.modeling_xllm.modeling_qformer import QFormerInterface
from xllm.testing import tiny_interface_config


def test_interleaved_times_alternate_the_functions_and_their_order_round_by_round():
    calls = []
    times = interleaved_times(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1
    )
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b"]  # warm-up, then neither always second
    assert [len(values) for values in times.values()] == [3, 3]


def test_median_ratio_is_the_median_of_per_round_ratios():
    assert median_ratio([2.0, 9.0, 3.0], [1.0, 1.0, 1.0]) == 3.0
    assert median_ratio([2.0, 4.0, 30.0], [2.0, 2.0, 10.0]) == 2.0


def test_format_table_aligns_columns_right():
    assert format_table(["name", "ms"], [["x", 1.5]]).splitlines() == ["name   ms", "   x  1.5"]


def test_qformer_benchmark_matches_transformers_outputs_and_counts_equal_flops():
    rows = {row["step"]: row for row in bench_qformer.main(["--tiny", "--repeats", "1"])}
    assert rows["xllm"]["gflop"] == rows["transformers"]["gflop"] > 0


@pytest.mark.parametrize(
    "benchmark",
    [bench_cif, bench_glue, bench_generation, bench_processor],
    ids=lambda module: module.__name__.split(".")[-1],
)
def test_benchmark_runs_at_tiny_size_and_returns_positive_times(benchmark):
    rows = benchmark.main(["--tiny", "--repeats", "1"])
    assert rows
    for row in rows:
        assert all(value > 0 for key, value in row.items() if key.endswith("_ms"))


def test_training_benchmark_shows_the_unfrozen_llm_training_more_parameters():
    rows = {
        row["configuration"]: row
        for row in bench_training.main(["--tiny", "--repeats", "1", "--skip-memory"])
    }
    assert (
        0
        < rows["LLM frozen (stage 2)"]["trainable_fraction"]
        < rows["LLM unfrozen"]["trainable_fraction"]
        <= 1
    )


def test_training_memory_growth_is_measured_from_the_process_high_water_mark():
    assert bench_training.peak_memory_growth_mib("tiny", "LLM unfrozen") >= 0


def test_speech_benchmark_shows_cif_emitting_fewer_tokens_than_pooled_frames():
    rows = bench_speech.main(["--tiny"])
    assert len(rows) == 2
    for row in rows:
        assert 0 < row["cif_tokens_per_s"] < row["pooled_tokens_per_s"]


def test_qformer_interface_compiles_with_aot_eager_and_gives_the_eager_outputs():
    torch.manual_seed(0)
    interface = QFormerInterface(tiny_interface_config(encoder_hidden_size=32, output_hidden_size=32)).eval()
    encoder_states = torch.randn(2, 5, 32)
    instruction_ids = torch.randint(5, 40, (2, 3))
    instruction_mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    compiled = torch.compile(interface, backend="aot_eager", fullgraph=False)
    with torch.no_grad():
        expected = interface(encoder_states, instruction_ids, instruction_mask)
        actual = compiled(encoder_states, instruction_ids, instruction_mask)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_feature_cache_benchmark_times_both_steps_and_counts_the_encoder_out_of_the_cached_weights():
    rows = {
        row["configuration"]: row
        for row in bench_feature_cache.main(["--tiny", "--repeats", "1", "--skip-memory"])
    }
    assert rows["live encoder"]["median_ms"] > 0 and rows["cached features"]["median_ms"] > 0
    assert rows["cached features"]["weights_mib"] < rows["live encoder"]["weights_mib"]


def test_serving_benchmark_answers_every_request_of_both_client_counts():
    rows = bench_serving.main(["--tiny"])
    assert [row["clients"] for row in rows[:2]] == [1, 8]
    assert all(row["requests/s"] > 0 and row["tokens/s"] > 0 for row in rows[:2])
    assert rows[2]["ratio"] > 0 and rows[2]["mean_batch"] >= 1


def test_ratio_interval_is_the_binomial_order_statistics_interval_of_the_per_round_ratios():
    from benchmarks.timing import ratio_interval

    ones = [1.0] * 30
    assert ratio_interval([float(v) for v in range(30, 0, -1)], ones) == (10.0, 21.0)  # x_(10), x_(21) of 30
    assert ratio_interval([6.0, 2.0, 4.0], [2.0, 2.0, 2.0]) == (1.0, 3.0)  # too few rounds: the extremes
    with pytest.raises(ValueError, match="empty"):
        ratio_interval([], [])
