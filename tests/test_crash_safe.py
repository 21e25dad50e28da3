"""Crash-safe checkpoints: a run killed with SIGKILL (once in the middle of a checkpoint save, once
in the middle of a training step) resumes from its last complete checkpoint and ends with the
uninterrupted run's losses and weights."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_trainers import write_image_manifest

from xllm.trainers.checkpointing import (
    STAGING_FOLDER,
    TRAINABLE_WEIGHTS_NAME,
    is_complete_checkpoint,
    last_complete_checkpoint,
)
from xllm.trainers.training_run import run_training

# The killing is test-only: this script wraps library functions so that their Nth call writes half of
# its file (for `torch.save`) and then SIGKILLs the process, and runs `xllm train`.
KILLING_SCRIPT = """
import io, os, signal, sys
import torch
import transformers
from xllm.cli import main

name, when = os.environ["KILL_AT"].split(":")
calls = 0

def half_written_save(obj, path, *args, **kwargs):
    buffer = io.BytesIO()
    original_save(obj, buffer)
    with open(path, "wb") as file:
        file.write(buffer.getvalue()[: buffer.tell() // 2])

def killing(function, before_kill=None):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls == int(when):
            if before_kill:
                before_kill(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return wrapper

original_save = torch.save
if name == "torch.save":
    torch.save = killing(torch.save, half_written_save)
else:
    transformers.Trainer.training_step = killing(transformers.Trainer.training_step)
sys.exit(main(["train", *sys.argv[1:]]))
"""

# (function, call): each checkpoint makes three `torch.save` calls (optimizer, scheduler, RNG state),
# so the 5th writes half of the second checkpoint's (step 4) scheduler state; the second run resumes
# from checkpoint-2 and dies in its 3rd training step (step 5), after writing checkpoint-4.
KILL_IN_SAVE = ("torch.save", 5)
KILL_IN_STEP = ("training_step", 3)


def write_config(folder: Path, output_dir: Path) -> Path:
    config = {
        "stage": 2,
        "tiny_model": True,
        "modalities": ["image"],
        "datasets": [str(write_image_manifest(folder))],
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 2,
        "learning_rate": 3.0e-3,
        "lr_scheduler_type": "constant",
        "max_steps": 6,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 2,
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    path = folder / "stage2.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_until_killed(config: Path, kill_at: tuple[str, int], folder: Path) -> None:
    script = folder / "killed_training.py"
    script.write_text(KILLING_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(config), "--resume_from_checkpoint", "auto"],
        env={**os.environ, "KILL_AT": f"{kill_at[0]}:{kill_at[1]}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]


def checkpoint_names(output_dir: Path) -> list[str]:
    return sorted(p.name for p in output_dir.glob("checkpoint-*"))


def logged_losses(log_history: list[dict]) -> list[float]:
    return [entry["loss"] for entry in log_history if "loss" in entry]


def test_run_killed_mid_save_and_mid_step_resumes_to_the_uninterrupted_losses(tmp_path):
    uninterrupted = run_training(str(write_config(tmp_path, tmp_path / "uninterrupted")))
    output_dir = tmp_path / "killed"
    config = write_config(tmp_path, output_dir)

    train_until_killed(config, KILL_IN_SAVE, tmp_path)
    assert checkpoint_names(output_dir) == ["checkpoint-2"]
    assert (output_dir / STAGING_FOLDER / "checkpoint-4" / TRAINABLE_WEIGHTS_NAME).is_file()
    assert last_complete_checkpoint(str(output_dir)) == str(output_dir / "checkpoint-2")

    train_until_killed(config, KILL_IN_STEP, tmp_path)
    assert checkpoint_names(output_dir) == ["checkpoint-2", "checkpoint-4"]
    assert last_complete_checkpoint(str(output_dir)) == str(output_dir / "checkpoint-4")

    resumed = run_training(str(config), resume_from_checkpoint="auto")
    assert logged_losses(resumed.state.log_history) == pytest.approx(
        logged_losses(uninterrupted.state.log_history), abs=1e-6
    )
    for name, value in uninterrupted.model.model.interfaces["image"].state_dict().items():
        torch.testing.assert_close(
            resumed.model.model.interfaces["image"].state_dict()[name], value, atol=1e-6, rtol=0
        )
    assert checkpoint_names(output_dir) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    for checkpoint in output_dir.glob("checkpoint-*"):
        assert is_complete_checkpoint(str(checkpoint))
        assert load_file(checkpoint / TRAINABLE_WEIGHTS_NAME)
        torch.load(checkpoint / "optimizer.pt", weights_only=True)
    assert not (output_dir / STAGING_FOLDER).exists()


def test_last_complete_checkpoint_skips_a_higher_numbered_half_written_folder(tmp_path):
    for step, state in ((3, {"global_step": 3}), (7, None), (9, {"global_step": 2})):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(json.dumps(state))
    (tmp_path / "checkpoint-8").mkdir()
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"global_st')
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-3")
    assert last_complete_checkpoint(str(tmp_path / "missing")) is None
