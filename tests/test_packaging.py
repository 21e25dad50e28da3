"""The wheel ships the package data (metric scripts, chat template); the console script runs."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built from a copy of the working tree (setuptools writes `build/` and `*.egg-info`
    next to the sources), without build isolation so that no network is needed."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPOSITORY / name, source / name)
    shutil.copytree(REPOSITORY / "xllm", source / "xllm", ignore=shutil.ignore_patterns("__pycache__"))
    output = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(output), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [path] = output.glob("x_llm-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_wheel_contains_every_metric_script(wheel):
    metric_scripts = sorted(
        path.relative_to(REPOSITORY).as_posix()
        for path in (REPOSITORY / "xllm/evaluation/metrics").glob("*/*.py")
    )
    assert metric_scripts, "no metric scripts found in the working tree"
    missing = [script for script in metric_scripts if script not in wheel.namelist()]
    assert not missing


def test_wheel_contains_the_chat_template(wheel):
    assert "xllm/processing/chat_template_xllm.jinja" in wheel.namelist()


def test_wheel_declares_the_xllm_console_script(wheel):
    [entry_points] = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    lines = wheel.read(entry_points).decode().splitlines()
    assert "[console_scripts]" in lines
    assert "xllm = xllm.cli:main" in lines


def test_wheel_registers_the_lmms_eval_model(wheel):
    """lmms-eval 0.7 finds external models in the `lmms_eval.models` entry-point group (tests/lmms_eval_plugin/)."""
    [entry_points] = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    lines = wheel.read(entry_points).decode().splitlines()
    assert "[lmms_eval.models]" in lines
    assert "xllm = xllm.lmms_eval_model:manifest" in lines


def test_xllm_help_runs():
    executable = shutil.which("xllm", path=str(Path(sys.executable).parent))
    assert executable is not None, "the `xllm` console script is not installed next to this Python"
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: xllm" in result.stdout
