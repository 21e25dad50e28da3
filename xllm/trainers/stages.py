"""Stage 2 (alignment) and stage 3 (multimodal instruction tuning) as `transformers.Trainer`s.

Every stage trainer shares `StageTrainingMixin`, which adds to a `Trainer` what X-LLM needs:

* the stage, not the user, decides which parameters train (`trainable_components`, applied
  once in `__init__`);
* each loss term is logged separately (`loss_lm`, `loss_itc`, ...);
* intermediate checkpoints hold only the trainable parameters (plus optimizer, scheduler and RNG
  state, as usual), never the frozen encoders and LLM; resuming loads them back; `save_model()`
  writes the full `save_pretrained` folder;
* checkpoints are crash-safe: each is written into a hidden staging folder and renamed into place
  once complete, and `train(resume_from_checkpoint=True)` resumes from `last_complete_checkpoint`;
* CIF's quantity loss keeps its weight under gradient accumulation and multi-process training.
"""

import json
import os
import re
import shutil
from collections import defaultdict

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

TRAINABLE_WEIGHTS_NAME = "trainable_model.safetensors"
TRAINER_STATE_NAME = "trainer_state.json"
STAGING_FOLDER = ".incomplete-checkpoints"  # not matched by `checkpoint-*`: Trainer's rotation ignores it
CHECKPOINT_PATTERN = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The model inside a `peft.PeftModel` (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


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


def init_video_from_image(model: nn.Module) -> None:
    """Copy the (trained) image interface into the video interface (X-LLM stage 2)."""
    interfaces = unwrap_peft(model).model.interfaces
    if "image" not in interfaces or "video" not in interfaces:
        raise ValueError(f"`model` needs image and video interfaces, it has {list(interfaces)}.")
    image_config, video_config = interfaces["image"].config, interfaces["video"].config
    if image_config.to_diff_dict() != video_config.to_diff_dict():
        raise ValueError(
            "The image and video interface configs differ; the video one cannot start from the image one."
        )
    interfaces["video"].load_state_dict(interfaces["image"].state_dict())


class StageTrainingMixin:
    """Stage-decided trainable parameters, per-term loss logging, trainable-only checkpoints."""

    trainable_components: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, args: TrainingArguments | None = None, **kwargs):
        self.set_trainable_parameters(model)
        if args is not None:
            args.remove_unused_columns = False  # the collator reads the raw columns (messages, media)
            if args.ddp_find_unused_parameters is None:
                # A batch without video leaves the video interface out of the graph on that process;
                # DDP must then look for unused parameters or it waits forever for their gradients.
                # (Trainer's own default turns the search off under activation checkpointing; use
                # `gradient_checkpointing_kwargs={"use_reentrant": False}`, which works with it.)
                args.ddp_find_unused_parameters = True
        self._staging_dir = None  # set while a checkpoint is being written (see `_save_checkpoint`)
        super().__init__(model, args, **kwargs)
        self._loss_term_sums = defaultdict(float)
        self._loss_term_steps = set()

    def stage_components(self, model: nn.Module) -> tuple[str, ...]:
        """The components (names for `model.unfreeze`) that this stage trains."""
        return self.trainable_components

    def set_trainable_parameters(self, model: nn.Module) -> None:
        """Freeze everything, then unfreeze the stage's components and any LoRA adapters."""
        base = unwrap_peft(model)
        base.requires_grad_(False)
        base.unfreeze(*self.stage_components(base))
        for name, parameter in model.named_parameters():
            if "lora_" in name:  # peft's naming of adapter weights
                parameter.requires_grad_(True)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = self.model_loss(model, inputs, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def model_loss(self, model, inputs, num_items_in_batch=None):
        """(loss, outputs) of the model's own forward, as `Trainer.compute_loss` gives them, with CIF's
        quantity term rescaled for gradient accumulation; logs `loss_lm` and `loss_quantity`.

        When the model takes `num_items_in_batch`, Trainer stops dividing the loss by the accumulation
        steps (the token loss is a sum over the whole accumulated batch) and multiplies it by the
        number of processes (DDP averages gradients back). CIF's quantity loss is a per-batch mean
        added inside the model, so it would count once per micro-batch and per process: it is brought
        back to 1 / accumulation steps here, which makes 4 micro-batches of 1 equal 1 batch of 4.
        """
        loss, outputs = Trainer.compute_loss(
            self, model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        steps = self.current_gradient_accumulation_steps if model.training else 1
        loss_spans_accumulation = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        quantity = self.weighted_quantity_loss(model, outputs)
        token_loss = outputs.loss if quantity is None else outputs.loss - quantity
        terms = {"lm": token_loss if loss_spans_accumulation else token_loss / steps}
        if quantity is not None:
            terms["quantity"] = quantity / steps
            if loss_spans_accumulation:
                loss = loss + quantity * (1 / steps - self.device_loss_scale())
        self.record_loss_terms(terms)
        return loss, outputs

    def weighted_quantity_loss(self, model: nn.Module, outputs) -> torch.Tensor | None:
        """The quantity term the model added to its loss (None without speech target lengths)."""
        quantity_loss = getattr(outputs, "quantity_loss", None)
        if quantity_loss is None:
            return None
        config = unwrap_peft(self.accelerator.unwrap_model(model)).config
        return config.speech_interface_config.quantity_loss_weight * quantity_loss

    def device_loss_scale(self) -> int:
        """The factor `Trainer.compute_loss` multiplies a loss normalised by `num_items_in_batch` by."""
        if not self.args.average_tokens_across_devices:
            return 1
        if self.args.n_gpu > 1:
            return self.args.n_gpu
        return self.accelerator.num_processes // self.get_tp_size()

    def record_loss_terms(self, terms: dict[str, torch.Tensor]) -> None:
        """Add this micro-batch's terms (already scaled for gradient accumulation) to the running sums."""
        if self.model.training:
            self._loss_term_steps.add(self.state.global_step)
            for name, value in terms.items():
                self._loss_term_sums[f"loss_{name}"] += float(value.detach())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_term_sums:
            steps = len(self._loss_term_steps)
            logs.update({name: total / steps for name, total in self._loss_term_sums.items()})
            self._loss_term_sums.clear()
            self._loss_term_steps.clear()
        super().log(logs, start_time)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Checkpoints (`_internal_call`) hold the trainable parameters only; a user's call writes the
        full model with `export_model`."""
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model)
        if _internal_call:
            save_trainable_weights(model, output_dir)
        else:
            self.export_model(model, output_dir)

    def export_model(self, model: nn.Module, output_dir: str) -> None:
        """A full `save_pretrained` folder (model and processor) that `from_pretrained` loads."""
        model.save_pretrained(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        load_trainable_weights(self.accelerator.unwrap_model(model or self.model), resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`; `resume_from_checkpoint=True` takes the last *complete* checkpoint."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"`resume_from_checkpoint=True` needs a complete checkpoint in {self.args.output_dir}; "
                    "there is none."
                )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _get_output_dir(self, trial) -> str:
        """While a checkpoint is being saved, Trainer writes into the staging folder."""
        return self._staging_dir or super()._get_output_dir(trial)

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


class AlignmentTrainer(StageTrainingMixin, Trainer):
    """Stage 2: interfaces learn to speak to the frozen LLM (next-token loss on the target text).

    `modalities` chooses which interfaces train (X-LLM aligns each one separately); by default all.
    """

    def __init__(self, model: nn.Module, args: TrainingArguments | None = None, modalities=None, **kwargs):
        available = tuple(unwrap_peft(model).model.interfaces)
        unknown = sorted(set(modalities or ()) - set(available))
        if unknown:
            raise ValueError(f"`modalities` must be among the model's interfaces {available}, got {unknown}.")
        self.modalities = tuple(modalities or available)
        super().__init__(model, args, **kwargs)

    def stage_components(self, model: nn.Module) -> tuple[str, ...]:
        return tuple(f"interfaces.{modality}" for modality in self.modalities)


class InstructionTuningTrainer(AlignmentTrainer):
    """Stage 3: all interfaces on mixed instruction data, loss on assistant turns (the collator's
    labels); optionally LoRA adapters on the LLM (`lora_config`, a `peft.LoraConfig`)."""

    def __init__(self, model: nn.Module, args: TrainingArguments | None = None, lora_config=None, **kwargs):
        if lora_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, lora_config)
        super().__init__(model, args, **kwargs)

    def export_model(self, model: nn.Module, output_dir: str) -> None:
        """With LoRA: the adapters alone under `output_dir/lora_adapter`, then the merged full model.
        The trainer's model is the merged one afterwards."""
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(os.path.join(output_dir, "lora_adapter"))
            model = model.merge_and_unload()
            self.model = self.model_wrapped = model
        super().export_model(model, output_dir)


def default_lora_config(rank: int = 8, alpha: int = 16, dropout: float = 0.05):
    """LoRA on the attention projections of the LLM only (never on encoders or interfaces)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
    )


__all__ = [
    "AlignmentTrainer",
    "InstructionTuningTrainer",
    "StageTrainingMixin",
    "default_lora_config",
    "init_video_from_image",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "load_trainable_weights",
    "save_trainable_weights",
]
