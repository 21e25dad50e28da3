"""The GPU check (`benchmarks/gpu_check.py`) runs at tiny sizes on the CPU, so it is known to work before a
GPU is lent; its MFU uses the right bf16 peak for each GPU."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import bf16_peak_tflops

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "device_name, peak",
    [
        ("NVIDIA H200", 989.0),
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_bf16_peak_is_looked_up_from_the_device_name(device_name, peak):
    assert bf16_peak_tflops(device_name) == peak


def test_smoke_run_prints_every_row_of_the_table_with_finite_times():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(index for index, line in enumerate(lines) if line.split()[:1] == ["check"])
    rows = {}
    for line in lines[header + 1 : header + 8]:
        name, *values = re.split(
            r"\s{2,}", line.strip()
        )  # columns are 2+ spaces apart, names have single ones
        rows[name] = values
    assert list(rows) == [
        "stage 2, live encoder",
        "stage 2, cached features",
        "generation, batch 1",
        "generation, batch 16",
        "generation, batch 1, transformers' InstructBLIP",
        "generation, batch 16, transformers' InstructBLIP",
        "FSDP2, 1 process, 1 step",
    ]
    for name, (milliseconds, tokens_per_second, _, _) in rows.items():
        assert math.isfinite(float(milliseconds)) and float(milliseconds) > 0, name
        assert float(tokens_per_second) > 0, name
