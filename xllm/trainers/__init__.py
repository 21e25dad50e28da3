"""The three training stages as `transformers.Trainer` subclasses, their data and their checkpoints.

Stage 1 (`stage1_interface_pretraining.py`): each interface against its own frozen encoder.
Stage 2 (`stage2_alignment.py`): each interface against the frozen LLM.
Stage 3 (`stage3_instruction_tuning.py`, or `stage3_trl.py` through TRL): mixed instruction data,
optional LoRA on the LLM.
What every stage shares is in `stage_training.py`, checkpoints in `checkpointing.py`, manifests and
the collator in `data.py`, and a run from a YAML file (`xllm train`) in `training_run.py`.
"""

from xllm.manifests import load_manifest, mix_datasets

from .checkpointing import is_complete_checkpoint, last_complete_checkpoint
from .data import XLLMDataCollator
from .stage1_interface_pretraining import (
    CFormerPretrainingHeads,
    InterfacePretrainingTrainer,
    QFormerPretrainingCollator,
    QFormerPretrainingHeads,
    SpeechRecognitionCollator,
    load_interface_checkpoint,
)
from .stage2_alignment import AlignmentTrainer, init_video_from_image
from .stage3_instruction_tuning import InstructionTuningTrainer, default_lora_config
from .stage3_trl import XLLMSFTTrainer
from .training_run import run_training

__all__ = [
    "AlignmentTrainer",
    "CFormerPretrainingHeads",
    "InstructionTuningTrainer",
    "InterfacePretrainingTrainer",
    "QFormerPretrainingCollator",
    "QFormerPretrainingHeads",
    "SpeechRecognitionCollator",
    "XLLMDataCollator",
    "XLLMSFTTrainer",
    "default_lora_config",
    "init_video_from_image",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "load_interface_checkpoint",
    "load_manifest",
    "mix_datasets",
    "run_training",
]
