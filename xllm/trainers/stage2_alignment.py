"""Stage 2, alignment: each interface learns to speak to the frozen LLM.

The loss is the LLM's next-token loss on the target text (captions, transcripts); encoders and LLM
stay frozen. X-LLM aligns each interface separately and starts video from the trained image
interface (`init_video_from_image`).
"""

from torch import nn
from transformers import Trainer, TrainingArguments

from .stage_training import StageTrainingMixin, unwrap_peft


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


__all__ = ["AlignmentTrainer", "init_video_from_image"]
