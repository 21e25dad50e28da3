"""Stage 3, multimodal instruction tuning: every interface on mixed instruction data.

The loss is on the assistant turns only (the collator's labels); optionally LoRA adapters on the LLM,
never on encoders or interfaces.
"""

import copy
import os

from torch import nn
from transformers import TrainingArguments

from .stage2_alignment import AlignmentTrainer


class InstructionTuningTrainer(AlignmentTrainer):
    """Stage 3: all interfaces on mixed instruction data, loss on assistant turns (the collator's
    labels); optionally LoRA adapters on the LLM (`lora_config`, a `peft.LoraConfig`).

    With a quantized LLM (`from_pretrained(..., quantization_config=BitsAndBytesConfig(...))`) this is QLoRA:
    peft's `prepare_model_for_kbit_training` readies the model first (fp32 for the non-quantized weights,
    gradients into the LLM's inputs, activation checkpointing when `args.gradient_checkpointing`)."""

    def __init__(self, model: nn.Module, args: TrainingArguments | None = None, lora_config=None, **kwargs):
        if getattr(model, "is_quantized", False) and lora_config is None:
            raise ValueError(
                "A quantized LLM trains only through adapters: pass `lora_config` (QLoRA), got None."
            )
        if lora_config is not None:
            from peft import get_peft_model, prepare_model_for_kbit_training

            if getattr(model, "is_quantized", False):
                model = prepare_model_for_kbit_training(
                    model,
                    use_gradient_checkpointing=bool(args and args.gradient_checkpointing),
                    gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs if args else None,
                )
            model = get_peft_model(model, lora_config)
        super().__init__(model, args, **kwargs)
        if lora_config is not None and self.is_fsdp_enabled:
            raise ValueError(
                "Stage 3 with LoRA runs without FSDP for now: its export merges the adapters into an unsharded copy "
                "of the model, which a sharded one cannot give. Launch it with DDP (`torchrun`, `accelerate launch` "
                "without an FSDP config), or with `lora_rank: 0` under FSDP."
            )

    def export_model(self, model: nn.Module, output_dir: str, state_dict: dict | None = None) -> nn.Module:
        """With LoRA: the adapters alone under `output_dir/lora_adapter`, then the merged full model,
        which is returned. The merge happens on a copy (it costs the model's memory once more), so the
        trainer goes on training its own model with its adapters, also after a `save_model()` mid-run.
        `state_dict`: the weights gathered from FSDP shards (without LoRA, see `__init__`)."""
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(os.path.join(output_dir, "lora_adapter"))
            model = copy.deepcopy(model).merge_and_unload()
        return super().export_model(model, output_dir, state_dict=state_dict)


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
