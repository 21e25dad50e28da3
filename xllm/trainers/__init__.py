"""The three training stages as `transformers.Trainer` subclasses, and their data loading.

Stage 1 (`InterfacePretrainingTrainer`): each interface against its own frozen encoder.
Stage 2 (`AlignmentTrainer`): each interface against the frozen LLM.
Stage 3 (`InstructionTuningTrainer`): mixed instruction data, optional LoRA on the LLM.
"""

from .cli import add_train_command, run_training
from .data import XLLMDataCollator, load_manifest, mix_datasets
from .pretraining import (
    CFormerPretrainingHeads,
    InterfacePretrainingTrainer,
    PretrainingCollator,
    QFormerPretrainingHeads,
    SpeechRecognitionCollator,
    load_interface_checkpoint,
)
from .sft import XLLMSFTTrainer
from .stages import (
    AlignmentTrainer,
    InstructionTuningTrainer,
    default_lora_config,
    init_video_from_image,
    is_complete_checkpoint,
    last_complete_checkpoint,
)

__all__ = [
    "AlignmentTrainer",
    "CFormerPretrainingHeads",
    "SpeechRecognitionCollator",
    "XLLMSFTTrainer",
    "add_train_command",
    "run_training",
    "InstructionTuningTrainer",
    "InterfacePretrainingTrainer",
    "PretrainingCollator",
    "QFormerPretrainingHeads",
    "XLLMDataCollator",
    "default_lora_config",
    "init_video_from_image",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "load_interface_checkpoint",
    "load_manifest",
    "mix_datasets",
]
