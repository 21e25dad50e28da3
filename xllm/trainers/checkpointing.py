"""Checkpoints of the stage trainers: trainable weights only, written crash-safe.

* A checkpoint holds the parameters that train (interfaces, LoRA adapters, stage-1 heads) plus
  Trainer's optimizer, scheduler and RNG state, never the frozen encoders and LLM.
* A `checkpoint-N` folder is always complete: each is written into a hidden staging folder and renamed
  into place once every process has written its part; `last_complete_checkpoint` skips anything a crash
  left behind, where `transformers.trainer_utils.get_last_checkpoint` would take the highest number.

Under FSDP (`accelerate launch --config_file configs/accelerate/fsdp_*.yaml`) parameters are sharded
DTensors: the trainable ones are gathered into the same single-file format (loadable on one process) and
scattered back on resume, and the optimizer state is written as one full, name-keyed file, where Trainer
would write a sharded copy of the *whole* model (frozen LLM included) beside its sharded optimizer.

`CrashSafeCheckpoints` is the `Trainer` mixin; it overrides six private `Trainer` methods, each because
no public hook covers it (a comment at each says which).
"""

import json
import os
import re
import shutil

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.tensor import DTensor
from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

TRAINABLE_WEIGHTS_NAME = "trainable_model.safetensors"
TRAINER_STATE_NAME = "trainer_state.json"
STAGING_FOLDER = ".incomplete-checkpoints"  # not matched by `checkpoint-*`: Trainer's rotation ignores it
CHECKPOINT_PATTERN = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def gathered(tensors, keep: bool = True) -> dict[str, torch.Tensor]:
    """(name, tensor) pairs whole and on the CPU: FSDP-sharded ones (DTensors) are gathered one at a time, so a
    process holds one whole tensor at a time on its device. Every process must call this when any tensor is
    sharded; those without `keep` drop the result (an empty dict)."""
    state_dict = {}
    for name, tensor in tensors:
        whole = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
        if keep:
            state_dict[name] = whole.detach().cpu().contiguous()
    return state_dict


def trainable_state_dict(model: nn.Module, keep: bool = True) -> dict[str, torch.Tensor]:
    """The trainable parameters, whole and on the CPU (see `gathered`)."""
    return gathered(((name, p) for name, p in model.named_parameters() if p.requires_grad), keep)


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 (`fully_shard`) sharded the model's parameters into DTensors."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def save_trainable_weights(model: nn.Module, output_dir: str, write: bool = True) -> None:
    """Write the parameters that train (interfaces, LoRA adapters, heads) and nothing else. Under FSDP every
    process calls this (the shards are gathered) and only the one with `write` writes the file."""
    weights = trainable_state_dict(model, keep=write)
    if write:
        os.makedirs(output_dir, exist_ok=True)
        save_file(weights, os.path.join(output_dir, TRAINABLE_WEIGHTS_NAME))


def load_trainable_weights(model: nn.Module, checkpoint_dir: str) -> None:
    """Load a `save_trainable_weights` file; every trainable parameter must be in it. Into an FSDP-sharded
    model every process loads the whole file and keeps its own shards."""
    path = os.path.join(checkpoint_dir, TRAINABLE_WEIGHTS_NAME)
    if not os.path.isfile(path):
        raise ValueError(
            f"`resume_from_checkpoint` must hold {TRAINABLE_WEIGHTS_NAME}; {path} does not exist."
        )
    weights = load_file(path)
    parameters = dict(model.named_parameters())
    trainable = {name for name, p in parameters.items() if p.requires_grad}
    missing, unexpected = sorted(trainable - set(weights)), sorted(set(weights) - set(parameters))
    if unexpected or missing:
        raise ValueError(
            f"Checkpoint {checkpoint_dir} does not match the model's trainable parameters: "
            f"unexpected {unexpected[:5]}, missing {missing[:5]}."
        )
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        model.load_state_dict(weights, strict=False)


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

    # Under FSDP, Trainer saves a sharded copy of the whole model here (with the frozen parts) besides the
    # sharded optimizer; ours writes the optimizer state alone, gathered into one file keyed by parameter name.
    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not self.is_fsdp_enabled:
            return super()._save_optimizer_and_scheduler(output_dir)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        optimizer_state = get_optimizer_state_dict(
            self.model, self.optimizer, options=options
        )  # every process
        if self.args.should_save:
            torch.save(optimizer_state, os.path.join(output_dir, OPTIMIZER_NAME))
            torch.save(self.lr_scheduler.state_dict(), os.path.join(output_dir, SCHEDULER_NAME))

    # The counterpart of `_save_optimizer_and_scheduler`: every process reads the full optimizer state and keeps
    # its shards.
    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if not self.is_fsdp_enabled or checkpoint is None:
            return super()._load_optimizer_and_scheduler(checkpoint)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        optimizer_state = torch.load(
            os.path.join(checkpoint, OPTIMIZER_NAME), map_location="cpu", weights_only=True
        )
        set_optimizer_state_dict(
            self.model, self.optimizer, optimizer_state, options=StateDictOptions(full_state_dict=True)
        )
        self.lr_scheduler.load_state_dict(
            torch.load(os.path.join(checkpoint, SCHEDULER_NAME), weights_only=True)
        )

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
    "gathered",
    "is_complete_checkpoint",
    "is_sharded",
    "last_complete_checkpoint",
    "load_trainable_weights",
    "save_trainable_weights",
]
