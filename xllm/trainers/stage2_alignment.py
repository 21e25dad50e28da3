"""Stage 2, alignment: each interface learns to speak to the frozen LLM.

The loss is the LLM's next-token loss on the target text (captions, transcripts); encoders and LLM
stay frozen. X-LLM aligns each interface separately and starts video from the trained image
interface (`init_video_from_image`).

Which parts of an interface train (`interface_parts`, also for stage 3): "all", or
"queries_and_adapters", what X-LLM's released code trains once its Q-Former is in place: the learned
queries and the linear adapter into the LLM, with Q-Former, encoder LayerNorm and the C-Former's
transformer and input projection frozen (X-LLM `xllm/models/xllm_models/xllm.py:129-146` in stage 3;
`xllm_video.py:96-114` for video in stage 2, whose Q-Former is the image one, frozen).
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
    # Video time (`frame_positions`) is the video interface's own: its embeddings keep their initialisation.
    if {**image_config.to_diff_dict(), "frame_positions": 0} != {
        **video_config.to_diff_dict(),
        "frame_positions": 0,
    }:
        raise ValueError(
            "The image and video interface configs differ; the video one cannot start from the image one."
        )
    missing, unexpected = interfaces["video"].load_state_dict(interfaces["image"].state_dict(), strict=False)
    if unexpected or any(not key.startswith("frame_") for key in missing):
        raise ValueError(
            f"The image interface does not fit the video one: missing {missing}, unexpected {unexpected}."
        )


INTERFACE_PARTS = ("all", "queries_and_adapters")


class AlignmentTrainer(StageTrainingMixin, Trainer):
    """Stage 2: interfaces learn to speak to the frozen LLM (next-token loss on the target text).

    `modalities` chooses which interfaces train (X-LLM aligns each one separately); by default all.
    `interface_parts` chooses which of their parameters train (module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        args: TrainingArguments | None = None,
        modalities=None,
        interface_parts: str = "all",
        **kwargs,
    ):
        available = tuple(unwrap_peft(model).model.interfaces)
        unknown = sorted(set(modalities or ()) - set(available))
        if unknown:
            raise ValueError(f"`modalities` must be among the model's interfaces {available}, got {unknown}.")
        if interface_parts not in INTERFACE_PARTS:
            raise ValueError(f"`interface_parts` must be one of {INTERFACE_PARTS}, got {interface_parts!r}.")
        self.modalities = tuple(modalities or available)
        self.interface_parts = interface_parts
        super().__init__(model, args, **kwargs)

    def stage_components(self, model: nn.Module) -> tuple[str, ...]:
        if self.interface_parts == "queries_and_adapters":
            return tuple(f"interfaces.{modality}.adapter" for modality in self.modalities)
        return tuple(f"interfaces.{modality}" for modality in self.modalities)

    def set_trainable_parameters(self, model: nn.Module) -> None:
        super().set_trainable_parameters(model)
        if self.interface_parts == "queries_and_adapters":
            interfaces = unwrap_peft(model).model.interfaces
            for modality in self.modalities:
                queries = getattr(interfaces[modality], "query_tokens", None)  # the C-Former has none
                if queries is not None:
                    queries.requires_grad_(True)


__all__ = ["INTERFACE_PARTS", "AlignmentTrainer", "init_video_from_image"]
