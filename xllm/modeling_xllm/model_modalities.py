"""What each modality is to the model: one row per modality. Config, model and trainers derive from it.

A row says which encoder reads the modality, under which `forward` keywords its tensors come, how
one item is cut into encoder inputs, and the text cue X-InstructBLIP writes before its block.

Item layouts:

* `single`: one encoder input per item (an image, a point cloud); the tensor is
  `(items, *encoder_input)`;
* `windows`: several encoder inputs per item, in time order (video frames, audio windows); the
  tensor is `(items, windows, *encoder_input)`, with an optional `(items, windows)` mask that marks
  the real windows (they come first). Every window goes through the interface; the outputs of an
  item's windows are concatenated;
* `sequence`: one variable-length input per item, `(items, time, ...)` with an `(items, time)`
  attention mask; the interface (CIF) decides how many tokens it becomes, so the model splices
  them into the sequence itself.

Rules shared by every row (nothing else names a modality): the placeholder token is `<name>`; the
config keys are `{name}_interface_config` and `{name}_token_id`, and `{encoder}_config` for the
encoder, which is `model.encoders[encoder]`.

Adding a modality takes a row here, a row in `processing/processor_modalities.py`, an encoder
(any transformers encoder, or one of this package) and an interface kind.
"""

from dataclasses import dataclass
from functools import cached_property

LAYOUTS = ("single", "windows", "sequence")


@dataclass(frozen=True)
class ModelModality:
    """One modality as the model sees it; see the module docstring for `layout`."""

    encoder: str
    input_name: str
    layout: str
    mask_name: str | None = None
    target_lengths_name: str | None = None  # `sequence` only: transcript token counts (training)
    cue: str = ""  # X-InstructBLIP's text before the modality's block (`modality_cues`)
    transformers_modality: str | None = None  # its name among transformers' input modalities

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {LAYOUTS}, got {self.layout!r}.")

    @cached_property  # read at every generation step
    def input_names(self) -> tuple[str, ...]:
        """Every `forward` keyword that carries this modality's media."""
        names = (self.input_name, self.mask_name, self.target_lengths_name)
        return tuple(name for name in names if name is not None)

    @property
    def interface_kinds(self) -> tuple[str, ...]:
        """Interface kinds that can read it: CIF for variable length, fixed-length ones otherwise."""
        return ("cformer",) if self.layout == "sequence" else ("qformer", "linear")


MODALITIES: dict[str, ModelModality] = {
    "image": ModelModality(
        encoder="vision",
        input_name="pixel_values",
        layout="single",
        cue="image: ",
        transformers_modality="image",
    ),
    "video": ModelModality(
        encoder="vision",
        input_name="pixel_values_videos",
        layout="windows",
        cue="video: ",
        transformers_modality="video",
    ),
    "speech": ModelModality(
        encoder="speech",
        input_name="speech_features",
        layout="sequence",
        mask_name="speech_attention_mask",
        target_lengths_name="speech_target_lengths",
        cue="speech: ",
        transformers_modality="audio",
    ),
    "audio": ModelModality(
        encoder="audio",
        input_name="audio_features",
        layout="windows",
        mask_name="audio_window_mask",
        cue="audio: ",
        transformers_modality="audio",
    ),
    "point_cloud": ModelModality(
        encoder="point_cloud", input_name="point_clouds", layout="single", cue="3d: "
    ),
}


def media_input_names() -> frozenset[str]:
    """Every `forward` keyword that carries media, over the rows the table has now (a modality can be added)."""
    return frozenset(name for row in MODALITIES.values() for name in row.input_names)


def model_modality(name: str) -> ModelModality:
    """The row of a modality; a ValueError lists the known ones."""
    if name not in MODALITIES:
        raise ValueError(f"Unknown modality {name!r}; expected one of {list(MODALITIES)}.")
    return MODALITIES[name]


def encoder_names() -> tuple[str, ...]:
    """Every encoder some modality reads from, in table order (`vision` feeds image and video)."""
    return tuple(dict.fromkeys(row.encoder for row in MODALITIES.values()))


def default_modality_cues() -> dict[str, str]:
    """X-InstructBLIP's cue of every modality (the LAVIS prompt prefixes; `speech: ` by analogy)."""
    return {name: row.cue for name, row in MODALITIES.items()}


def encoder_config_key(encoder: str) -> str:
    return f"{encoder}_config"


def interface_config_key(modality: str) -> str:
    return f"{modality}_interface_config"


def token_id_key(modality: str) -> str:
    return f"{modality}_token_id"


def placeholder(modality: str) -> str:
    return f"<{modality}>"


__all__ = [
    "LAYOUTS",
    "MODALITIES",
    "ModelModality",
    "default_modality_cues",
    "encoder_config_key",
    "encoder_names",
    "interface_config_key",
    "media_input_names",
    "model_modality",
    "placeholder",
    "token_id_key",
]
