"""Checkpoints of the stage trainers: trainable weights only, written crash-safe.

* A checkpoint holds the parameters that train (interfaces, LoRA adapters, stage-1 heads) plus
  Trainer's optimizer, scheduler and RNG state, never the frozen encoders and LLM.
* A `checkpoint-N` folder is always complete: each is written into a hidden staging folder and renamed
  into place once every process has written its part; `last_complete_checkpoint` skips anything a crash
  left behind, where `transformers.trainer_utils.get_last_checkpoint` would take the highest number.

`CrashSafeCheckpoints` is the `Trainer` mixin; it overrides four private `Trainer` methods, each because
no public hook covers it (a comment at each says which).
"""

import json
import os
import re
import shutil

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

TRAINABLE_WEIGHTS_NAME = "trainable_model.safetensors"
TRAINER_STATE_NAME = "trainer_state.json"
STAGING_FOLDER = ".incomplete-checkpoints"  # not matched by `checkpoint-*`: Trainer's rotation ignores it
CHECKPOINT_PATTERN = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_trainable_weights(model: nn.Module, output_dir: str) -> None:
    """Write the parameters that train (interfaces, LoRA adapters, heads) and nothing else."""
    os.makedirs(output_dir, exist_ok=True)
    save_file(trainable_state_dict(model), os.path.join(output_dir, TRAINABLE_WEIGHTS_NAME))


def load_trainable_weights(model: nn.Module, checkpoint_dir: str) -> None:
    """Load a `save_trainable_weights` file; every trainable parameter must be in it."""
    path = os.path.join(checkpoint_dir, TRAINABLE_WEIGHTS_NAME)
    if not os.path.isfile(path):
        raise ValueError(
            f"`resume_from_checkpoint` must hold {TRAINABLE_WEIGHTS_NAME}; {path} does not exist."
        )
    weights = load_file(path)
    missing = sorted(set(trainable_state_dict(model)) - set(weights))
    result = model.load_state_dict(weights, strict=False)
    if result.unexpected_keys or missing:
        raise ValueError(
            f"Checkpoint {checkpoint_dir} does not match the model's trainable parameters: "
            f"unexpected {result.unexpected_keys[:5]}, missing {missing[:5]}."
        )


def is_complete_checkpoint(folder: str) -> bool:
    """Whether `folder` holds a whole checkpoint: Trainer writes `trainer_state.json` after the weights,
    optimizer and RNG state, so a readable state file for the folder's own step marks it complete
    (this also recognises complete checkpoints written by a plain `Trainer`)."""
    match = CHECKPOINT_PATTERN.match(os.path.basename(os.path.normpath(folder)))
    try:
        with open(os.path.join(folder, TRAINER_STATE_NAME)) as file:
            state = json.load(file)
    except (OSError, ValueError):
        return False
    return match is not None and state.get("global_step") == int(match.group(1))


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The highest-numbered complete `checkpoint-N` folder in `output_dir` (None if there is none).

    `transformers.trainer_utils.get_last_checkpoint` takes the highest number whether or not its
    save finished; a run killed while saving would then resume from a half-written folder.
    """
    if not os.path.isdir(output_dir):
        return None
    steps = {
        int(match.group(1)): name
        for name in os.listdir(output_dir)
        if (match := CHECKPOINT_PATTERN.match(name))
    }
    for step in sorted(steps, reverse=True):
        folder = os.path.join(output_dir, steps[step])
        if is_complete_checkpoint(folder):
            return folder
    return None


def sync_folder(folder: str) -> None:
    """fsync every file of `folder`, then the folder itself, so a rename publishes data that is on disk."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as file:
                os.fsync(file.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def publish_checkpoint(staged: str, final: str) -> None:
    """Move a fully written checkpoint from its staging folder to its final name in one rename.

    A folder left under the final name (a run resumed from an earlier step saves that step again) is
    removed first; a crash in between leaves the earlier checkpoints, all complete.
    """
    sync_folder(staged)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(staged, final)
    sync_folder(os.path.dirname(final))


class CrashSafeCheckpoints:
    """`Trainer` mixin: checkpoints of trainable weights only, published by one rename."""

    _staging_dir: str | None = None  # set while a checkpoint is being written (see `_save_checkpoint`)

    # Trainer reads `model.safetensors` (all weights) here; our checkpoints hold the trainable ones.
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        load_trainable_weights(self.accelerator.unwrap_model(model or self.model), resume_from_checkpoint)

    # Trainer's version looks for full weight files by name; ours loads the trainable ones.
    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)

    # `Trainer._save_checkpoint` asks this for the folder it writes into; while a checkpoint is being
    # saved it is the staging folder.
    def _get_output_dir(self, trial) -> str:
        return self._staging_dir or super()._get_output_dir(trial)

    # The one place where a whole checkpoint is written (weights, optimizer, RNG, state): it is staged here.
    def _save_checkpoint(self, model: nn.Module, trial) -> None:
        """Trainer's checkpoint, written under `STAGING_FOLDER` and renamed to `checkpoint-N` once every
        process has written its part: a `checkpoint-N` folder is always complete."""
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_root = os.path.join(run_dir, STAGING_FOLDER)
        staged, final = os.path.join(staging_root, name), os.path.join(run_dir, name)
        if self.args.should_save and os.path.exists(staged):
            shutil.rmtree(staged)  # left by a save that was killed
        self.accelerator.wait_for_everyone()
        self._staging_dir = staging_root
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_dir = None
        self.accelerator.wait_for_everyone()
        if not self.args.should_save:
            return
        if self.state.best_model_checkpoint == staged:
            self.state.best_model_checkpoint = final
            self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
        publish_checkpoint(staged, final)
        if not os.listdir(staging_root):
            os.rmdir(staging_root)
        rotate_checkpoints(
            run_dir, self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True
        )


__all__ = [
    "CrashSafeCheckpoints",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "load_trainable_weights",
    "save_trainable_weights",
]
