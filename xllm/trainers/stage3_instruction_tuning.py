"""Stage 3, multimodal instruction tuning: every interface on mixed instruction data.

The loss is on the assistant turns only (the collator's labels); optionally LoRA adapters on the LLM,
never on encoders or interfaces. `interface_parts="queries_and_adapters"` trains only what X-LLM's
released stage 3 trains (`stage2_alignment.py`).
"""

import copy
import os

import torch
from torch import nn
from transformers import TrainingArguments

from .stage2_alignment import AlignmentTrainer


class InstructionTuningTrainer(AlignmentTrainer):
    """Stage 3: all interfaces on mixed instruction data, loss on assistant turns (the collator's
    labels); optionally LoRA adapters on the LLM (`lora_config`, a `peft.LoraConfig`); whole interfaces
    or their queries and adapters only (`interface_parts`).

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

    def export_model(self, model: nn.Module, output_dir: str, state_dict: dict | None = None) -> nn.Module:
        """With LoRA: the adapters alone under `output_dir/lora_adapter`, then the merged full model,
        which is returned. The merge happens on a copy (it costs the model's memory once more), so the
        trainer goes on training its own model with its adapters, also after a `save_model()` mid-run.
        `state_dict`: the weights gathered from FSDP shards; with LoRA they fill an unsharded copy built on
        the meta device (a sharded model cannot be merged), which is then saved and merged as above."""
        if hasattr(model, "merge_and_unload") and state_dict is not None:
            model, state_dict = unsharded_peft_copy(model, state_dict), None
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(os.path.join(output_dir, "lora_adapter"))
            model = copy.deepcopy(model).merge_and_unload()
        return super().export_model(model, output_dir, state_dict=state_dict)


def unsharded_peft_copy(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """A `PeftModel` like `model` (same base class and config, same adapters) holding `state_dict`, the whole
    weights gathered from an FSDP-sharded `model`, without allocating the model's memory twice."""
    from peft import get_peft_model

    base = model.get_base_model()
    with torch.device("meta"):
        copy_of_base = type(base)(base.config)
    adapter_config = copy.deepcopy(model.peft_config[model.active_adapter])
    plain = get_peft_model(copy_of_base, adapter_config, adapter_name=model.active_adapter)
    plain.load_state_dict(state_dict, assign=True)  # strict: every weight of the copy comes from the shards
    plain.get_base_model().tie_weights()
    return plain


def default_lora_config(rank: int = 8, alpha: int = 16, dropout: float = 0.05):
    """LoRA on the attention projections of the LLM only (never on encoders or interfaces)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
    )


__all__ = ["InstructionTuningTrainer", "default_lora_config", "unsharded_peft_copy"]
