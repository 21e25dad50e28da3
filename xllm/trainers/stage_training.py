"""What every stage trainer adds to `transformers.Trainer`, in one mixin (`StageTrainingMixin`):

* the stage, not the user, decides which parameters train (`stage_components`, applied once in
  `__init__`);
* each loss term is logged separately (`loss_lm`, `loss_itc`, ...);
* CIF's quantity loss keeps its weight under gradient accumulation and multi-process training;
* checkpoints hold only the trainable parameters and are crash-safe (`checkpointing.py`); `save_model()`
  writes the full `save_pretrained` folder (`export_model`);
* `train(resume_from_checkpoint=True)` resumes from the last *complete* checkpoint.
"""

from collections import defaultdict

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from .checkpointing import (
    CrashSafeCheckpoints,
    gathered,
    is_sharded,
    last_complete_checkpoint,
    save_trainable_weights,
)


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The model inside a `peft.PeftModel` (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class StageTrainingMixin(CrashSafeCheckpoints):
    """Stage-decided trainable parameters, per-term loss logging, trainable-only checkpoints."""

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
        super().__init__(model, args, **kwargs)
        self._loss_term_sums = defaultdict(float)
        self._loss_term_steps = set()

    def stage_components(self, model: nn.Module) -> tuple[str, ...]:
        """The components (names for `model.unfreeze`) that this stage trains."""
        raise NotImplementedError

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
        quantity = getattr(outputs, "quantity_loss", None)  # already weighted, as the model added it
        token_loss = outputs.loss if quantity is None else outputs.loss - quantity
        terms = {"lm": token_loss if loss_spans_accumulation else token_loss / steps}
        if quantity is not None:
            terms["quantity"] = quantity / steps
            if loss_spans_accumulation:
                loss = loss + quantity * (1 / steps - self.device_loss_scale())
        self.record_loss_terms(terms)
        return loss, outputs

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
        full model with `export_model`. Under FSDP every process calls this: the shards are gathered first."""
        output_dir = output_dir or self.args.output_dir
        model = self.accelerator.unwrap_model(self.model)
        if _internal_call:
            save_trainable_weights(model, output_dir, write=self.args.should_save)
        elif is_sharded(model):
            state_dict = gathered(model.state_dict().items(), keep=self.args.should_save)
            if self.args.should_save:
                self.export_model(model, output_dir, state_dict=state_dict)
        elif self.args.should_save:
            self.export_model(model, output_dir)

    def export_model(self, model: nn.Module, output_dir: str, state_dict: dict | None = None) -> nn.Module:
        """A full `save_pretrained` folder (model and processor) that `from_pretrained` loads; returns the
        model it saved. `state_dict`: the model's weights gathered from FSDP shards."""
        model.save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        return model

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


__all__ = ["StageTrainingMixin", "unwrap_peft"]
