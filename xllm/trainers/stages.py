"""Stage 2 (alignment) and stage 3 (multimodal instruction tuning) as `transformers.Trainer`s.

Every stage trainer shares `StageTrainingMixin`, which adds to a `Trainer` what X-LLM needs:

* the stage, not the user, decides which parameters train (`trainable_components`, applied
  once in `__init__`);
* each loss term is logged separately (`loss_lm`, `loss_itc`, ...);
* intermediate checkpoints hold only the trainable parameters (plus optimizer, scheduler and RNG
  state, as usual), never the frozen encoders and LLM; resuming loads them back; `save_model()`
  writes the full `save_pretrained` folder.
"""

import os
from collections import defaultdict

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer, TrainingArguments

TRAINABLE_WEIGHTS_NAME = "trainable_model.safetensors"


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
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        self.record_loss_terms({"lm": outputs.loss})
        return (loss, outputs) if return_outputs else loss

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
    "load_trainable_weights",
    "save_trainable_weights",
]
