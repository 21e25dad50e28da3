"""Stage 3 through TRL: `SFTTrainer` for X-LLM, TRL's configuration, data handling and PEFT, X-LLM's own loss.

TRL 1.16's `SFTTrainer.compute_loss` runs a fused LM head: it scores `base_model(...).last_hidden_state`
against the collator's `labels`. An X-LLM batch with speech is lengthened inside the model (CIF
decides how many tokens each utterance becomes), so those hidden states no longer line up with the
collator's labels, and the fused path would also drop CIF's quantity loss. `XLLMSFTTrainer` keeps
everything else of `SFTTrainer` and computes the loss as `transformers.Trainer` does: through the
model's own forward, which aligns the labels with the spliced sequence and adds the quantity loss.

SFTConfig options that do not apply (the model's forward decides the loss and the sequence):
`loss_type="dft"`, `label_smoothing_factor`, `compute_loss_func`, `packing`, `padding_free`,
`max_length` truncation and `completion_only_loss`/`assistant_only_loss` (the dataset is not
tokenized by TRL: `XLLMDataCollator` builds the batch and marks the assistant tokens), and
`use_liger_kernel`. The `entropy` metric is not logged; `mean_token_accuracy` is, on the aligned labels.
"""

import torch
from torch import nn
from trl import SFTConfig, SFTTrainer

from .stage_training import StageTrainingMixin, unwrap_peft


def token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct next-token predictions, scored positions) over the labels the model aligned."""
    predictions = logits[:, :-1].argmax(-1)  # (batch, seq - 1)
    targets = labels[:, 1:]
    scored = targets != -100
    return (predictions.eq(targets) & scored).sum(), scored.sum()


class XLLMSFTTrainer(StageTrainingMixin, SFTTrainer):
    """Stage-3 instruction tuning through TRL: the interfaces train (and LoRA adapters when
    `peft_config` is given), the loss is the model's own (next-token loss on the labels aligned
    with any spliced speech, plus CIF's quantity loss).

    Pass `data_collator=XLLMDataCollator(processor)`; the dataset is used as is
    (`dataset_kwargs={"skip_prepare_dataset": True}` is set for you).
    """

    def __init__(self, model: nn.Module, args: SFTConfig | None = None, **kwargs):
        if args is not None:
            args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
        super().__init__(model, args, **kwargs)
        # SFTTrainer wraps the model with PEFT after our freezing: the stage decides again.
        self.set_trainable_parameters(self.model)

    def stage_components(self, model: nn.Module) -> tuple[str, ...]:
        return tuple(f"interfaces.{modality}" for modality in unwrap_peft(model).model.interfaces)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = self.model_loss(model, {**inputs, "use_cache": False}, num_items_in_batch)
        labels = outputs.labels if outputs.labels is not None else inputs["labels"]
        correct, scored = token_accuracy(outputs.logits.detach(), labels)
        correct, scored = self.accelerator.gather_for_metrics((correct, scored))
        mode = "train" if model.training else "eval"
        self._metrics[mode]["mean_token_accuracy"].append((correct.sum() / scored.sum().clamp(min=1)).item())
        return (loss, outputs) if return_outputs else loss


__all__ = ["XLLMSFTTrainer", "token_accuracy"]
