"""Stage 3, multimodal instruction tuning: every interface on mixed instruction data.

The loss is on the assistant turns only (the collator's labels); optionally LoRA adapters on the LLM,
never on encoders or interfaces. `interface_parts="queries_and_adapters"` trains only what X-LLM's
released stage 3 trains (`stage2_alignment.py`).
"""

import copy
import os

from torch import nn
from transformers import TrainingArguments

from .stage2_alignment import AlignmentTrainer


class InstructionTuningTrainer(AlignmentTrainer):
    """Stage 3: all interfaces on mixed instruction data, loss on assistant turns (the collator's
    labels); optionally LoRA adapters on the LLM (`lora_config`, a `peft.LoraConfig`); whole interfaces
    or their queries and adapters only (`interface_parts`)."""

    def __init__(self, model: nn.Module, args: TrainingArguments | None = None, lora_config=None, **kwargs):
        if lora_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, lora_config)
        super().__init__(model, args, **kwargs)

    def export_model(self, model: nn.Module, output_dir: str) -> nn.Module:
        """With LoRA: the adapters alone under `output_dir/lora_adapter`, then the merged full model,
        which is returned. The merge happens on a copy (it costs the model's memory once more), so the
        trainer goes on training its own model with its adapters, also after a `save_model()` mid-run."""
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(os.path.join(output_dir, "lora_adapter"))
            model = copy.deepcopy(model).merge_and_unload()
        return super().export_model(model, output_dir)


def default_lora_config(rank: int = 8, alpha: int = 16, dropout: float = 0.05):
    """LoRA on the attention projections of the LLM only (never on encoders or interfaces)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
    )


__all__ = ["InstructionTuningTrainer", "default_lora_config"]
