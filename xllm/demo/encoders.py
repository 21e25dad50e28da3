"""Stage 0, the stand-ins for pretrained encoders: small transformers encoders pre-trained on the
world, then frozen.

No pretrained weights can be downloaded, and random frozen encoders leave the interfaces nothing
to read (the prototypes' shape accuracy stayed at chance). So each encoder first learns the
world's attributes by classification on its own train split: linear heads over mean- and
max-pooled encoder tokens, summed cross-entropy. The speech encoder learns to recognise words
instead (CTC over the world's vocabulary). Heads are thrown away; only the encoder is kept.

Train splits hold out combinations of one attribute with others (a red star never appears), and an
encoder trained on them reads the held-out attribute through the other one: colour tells which
shapes are possible, so on a red star it answers "not star" (measured: shape 0-5% on held-out
combinations). So part of each batch (half, or `DemoSettings.encoder_augmented_fraction`) is recoloured
(images, point clouds) or has its frequencies shuffled (sounds); the attributes the change keeps (shape,
size, position; a sound's speed) are learned from the changed part only, the others from the untouched
part only. The encoder then has to read shape or speed the same way whatever the colour or instrument, as
a pretrained encoder that has seen every colour on every shape would. No held-out combination is ever labelled.
"""

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, ParakeetEncoder, PreTrainedModel, ViTConfig, ViTModel

from ..modeling_xllm.configuration_beats import XLLMBeatsConfig
from ..modeling_xllm.configuration_pointbert import XLLMPointBertConfig
from ..modeling_xllm.modeling_beats import XLLMBeatsModel
from ..modeling_xllm.modeling_pointbert import XLLMPointBertModel
from ..world.vocabulary import ATTRIBUTES
from .settings import StepBudget

# Video attributes that need several frames, learned by the vision stand-in with `DemoSettings.encoder_motion_videos`.
MOTION_ATTRIBUTES = ("direction", "speed")
# The part of each batch augmented unless `DemoSettings.encoder_augmented_fraction` names the encoder.
DEFAULT_AUGMENTED_FRACTION = 0.5


def vision_encoder(image_side: int) -> ViTModel:
    """A 4-layer ViT over 8x8 patches (64 tokens for 64 px): images and video frames."""
    config = ViTConfig(
        image_size=image_side,
        patch_size=8,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ViTModel(config, add_pooling_layer=False)


def point_cloud_encoder() -> XLLMPointBertModel:
    """PointBERT with 32 groups of 16 points, coloured input, a 256-wide PointNet, 3 layers of width 128.

    The PointNet is half ULIP-2's width: at 512 it took two thirds of stage 0's point-cloud time (measured:
    800 steps in 408 s at 512, 137 s at 256), and 256 wide with twice the steps reads shape better (seed 0,
    its own head, training split / in distribution / held out: 94.7 / 92.3 / 82.7% in 259 s, against 87.7 /
    87.0 / 85.0% at 512 with 800 steps).
    """
    config = XLLMPointBertConfig(
        in_channels=6,
        num_groups=32,
        group_size=16,
        pointnet_width=256,
        group_embedding_size=128,
        position_embedding_size=64,
        hidden_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=256,
    )
    return XLLMPointBertModel(config)


def audio_encoder() -> XLLMBeatsModel:
    """BEATs with 2 layers of width 128 over 16x16 fbank patches."""
    config = XLLMBeatsConfig(
        patch_embedding_size=128,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        conv_pos_kernel_size=16,
        conv_pos_groups=4,
        num_buckets=64,
        max_distance=128,
    )
    return XLLMBeatsModel(config)


def speech_encoder() -> PreTrainedModel:
    """Parakeet-style conformer (4x conv subsampling) over 80-bin fbank, 3 layers of width 128."""
    config = AutoConfig.for_model(
        "parakeet_encoder",
        hidden_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=256,
        subsampling_factor=4,
        subsampling_conv_channels=32,
        conv_kernel_size=9,
        dropout=0.0,
        layerdrop=0.0,
        activation_dropout=0.0,
        attention_dropout=0.0,
        dropout_positions=0.0,
    )
    return ParakeetEncoder(config)


def encoder_tokens(encoder: PreTrainedModel, inputs: torch.Tensor, **kwargs) -> torch.Tensor:
    """(batch, tokens, width) from any of the encoders above."""
    return encoder(**{encoder.main_input_name: inputs}, **kwargs).last_hidden_state


def mean_max_pooled(tokens: torch.Tensor) -> torch.Tensor:
    """(inputs, tokens, width) -> (inputs, 2 * width): what the stage-0 heads read of each input."""
    return torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)


class AttributeHeads(nn.Module):
    """One linear classifier per attribute over [mean; max] of the encoder tokens."""

    def __init__(self, width: int, attributes: dict[str, tuple[str, ...]]):
        super().__init__()
        self.heads = nn.ModuleDict(
            {name: nn.Linear(2 * width, len(values)) for name, values in attributes.items()}
        )

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = mean_max_pooled(tokens)
        return {name: head(pooled) for name, head in self.heads.items()}


class MotionHeads(nn.Module):
    """Attributes of a video that only several frames show (direction, speed): a small MLP each over the
    frames' [mean; max]-pooled encoder tokens, concatenated in frame order. An MLP, not a linear head: speed
    is the size of a displacement, which no linear function of two positions gives."""

    def __init__(self, width: int, frames: int, attributes: dict[str, tuple[str, ...]]):
        super().__init__()
        self.frames = frames
        self.heads = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Linear(2 * width * frames, 256), nn.GELU(), nn.Linear(256, len(values))
                )
                for name, values in attributes.items()
            }
        )

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """(videos * frames, tokens, width), frames of a video consecutive -> logits per attribute."""
        pooled = mean_max_pooled(tokens)  # (videos * frames, 2 * width)
        per_video = pooled.view(-1, self.frames * pooled.shape[-1])
        return {name: head(per_video) for name, head in self.heads.items()}


def motion_objective(
    encoder: PreTrainedModel,
    videos: torch.Tensor,
    labels: dict[str, torch.Tensor],
    batch_size: int,
    seed: int,
) -> tuple[MotionHeads, Callable[[], torch.Tensor]]:
    """Heads for `labels` (direction, speed) over (videos, frames, 3, H, W) `videos`, and the loss of one
    random batch of `batch_size` videos, for `pretrain_on_attributes(auxiliary=...)`."""
    torch.manual_seed(seed)
    attributes = {name: ATTRIBUTES["video"][name] for name in MOTION_ATTRIBUTES}
    heads = MotionHeads(encoder.config.hidden_size, videos.shape[1], attributes)
    order = np.random.default_rng([seed, 17])

    def batch_loss() -> torch.Tensor:
        chosen = torch.from_numpy(order.choice(len(videos), size=min(batch_size, len(videos)), replace=False))
        logits = heads(encoder_tokens(encoder, videos[chosen].flatten(0, 1)))
        return sum(nn.functional.cross_entropy(logits[name], labels[name][chosen]) for name in logits)

    return heads, batch_loss


def recoloured_images(
    pixel_values: torch.Tensor, generator: torch.Generator, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Normalised (batch, 3, H, W) images with each shape's colour changed: the difference from the
    background (the top-left pixel) gets its channels shuffled and rescaled at random."""
    mean_, std_ = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    rgb = pixel_values * std_ + mean_
    background = rgb[:, :, :1, :1]
    permutation = torch.argsort(torch.rand(rgb.shape[0], 3, generator=generator), dim=1)
    shuffled = torch.gather(rgb - background, 1, permutation.view(-1, 3, 1, 1).expand_as(rgb))
    gains = 0.4 + 0.9 * torch.rand(rgb.shape[0], 3, 1, 1, generator=generator)
    recoloured = (background + shuffled * gains).clamp(0, 1)
    return (recoloured - mean_) / std_


def recoloured_point_clouds(points: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(batch, points, 6) xyz + rgb clouds painted one colour each: a random colour for half of
    them, a random grey for the other half. Greys keep the colour channels quiet, so geometry is
    learned sooner (with random colours only, shape reached 20% on held-out combinations in 240
    steps; with this mix, 40%)."""
    count = points.shape[0]
    colours = torch.rand(count, 1, 3, generator=generator)
    greys = torch.rand(count, 1, 1, generator=generator).expand(-1, -1, 3)
    grey = torch.rand(count, 1, 1, generator=generator) < 0.5
    paint = torch.where(grey, greys, colours).expand(-1, points.shape[1], -1)
    return torch.cat([points[..., :3], paint], dim=-1)


def shuffled_frequencies(features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(batch, frames, bins) fbank with the frequency bins of each sound shuffled: timbre and
    pitch are gone, the timing of the notes (speed) is not (each note still starts, decays and
    gives way to the next in the same frames)."""
    order = torch.argsort(torch.rand(features.shape[0], 1, features.shape[-1], generator=generator), dim=-1)
    return torch.gather(features, -1, order.expand_as(features))


def attribute_labels(rows: list[dict], modality: str) -> dict[str, torch.Tensor]:
    return {
        name: torch.tensor([values.index(row[name]) for row in rows])
        for name, values in ATTRIBUTES[modality].items()
    }


def _optimizer(parameters, budget: StepBudget):
    optimizer = torch.optim.AdamW(parameters, lr=budget.learning_rate, weight_decay=0.01)
    warmup = max(1, budget.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(
            (step + 1) / warmup, max(0.0, (budget.steps - step) / max(1, budget.steps - warmup))
        ),
    )
    return optimizer, schedule


def pretrain_on_attributes(
    encoder: PreTrainedModel,
    inputs: torch.Tensor,
    labels: dict[str, torch.Tensor],
    attributes: dict[str, tuple[str, ...]],
    budget: StepBudget,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
    augmentation: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    invariant_attributes: tuple[str, ...] = (),
    augmented_fraction: float = DEFAULT_AUGMENTED_FRACTION,
    auxiliary: tuple[nn.Module, Callable[[], torch.Tensor]] | None = None,
) -> tuple[AttributeHeads, list[float]]:
    """Attribute classification on (items, *input) `inputs`; the encoder is frozen afterwards.
    Returns the heads (to measure held-out accuracy) and the loss per step.

    With `augmentation`, the last `augmented_fraction` of every batch is augmented: `invariant_attributes`
    (those the augmentation leaves unchanged) are learned from the augmented part only, every other
    attribute from the untouched part only, so no invariant attribute is ever learned next to the
    true value of the attributes the augmentation changes.

    `auxiliary` (heads, a function giving one batch's loss) is a second objective trained alongside, its
    loss added at every step (the vision stand-in's motion: `motion_objective`)."""
    if not 0 < augmented_fraction < 1:
        raise ValueError(f"augmented_fraction must lie strictly between 0 and 1, got {augmented_fraction}")
    torch.manual_seed(seed)
    heads = AttributeHeads(encoder.config.hidden_size, attributes)
    auxiliary_heads, auxiliary_loss = auxiliary if auxiliary is not None else (nn.Module(), None)
    parameters = [*encoder.parameters(), *heads.parameters(), *auxiliary_heads.parameters()]
    optimizer, schedule = _optimizer(parameters, budget)
    order = np.random.default_rng([seed, 9])
    generator = torch.Generator().manual_seed(seed)
    losses = []
    encoder.train()
    for step in range(budget.steps):
        chosen = torch.from_numpy(
            order.choice(len(inputs), size=min(budget.batch_size, len(inputs)), replace=False)
        )
        batch = inputs[chosen]
        targets = {name: labels[name][chosen].clone() for name in attributes}
        if augmentation is not None:
            untouched = int(len(chosen) * (1 - augmented_fraction))  # half: len // 2, as before the knob
            batch = torch.cat([batch[:untouched], augmentation(batch[untouched:], generator)])
            for name, target in targets.items():  # -100: ignored by cross_entropy
                if name in invariant_attributes:
                    target[:untouched] = -100
                else:
                    target[untouched:] = -100
        logits = heads(encoder_tokens(encoder, batch))
        loss = sum(nn.functional.cross_entropy(logits[name], targets[name]) for name in attributes)
        if auxiliary_loss is not None:
            loss = loss + auxiliary_loss()
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if progress is not None:
            progress(step, loss.item())
    encoder.eval().requires_grad_(False)
    heads.eval()
    auxiliary_heads.eval()
    return heads, losses


def pretrain_speech_recognition(
    encoder: PreTrainedModel,
    features: torch.Tensor,
    feature_mask: torch.Tensor,
    transcripts: list[list[int]],
    vocab_size: int,
    budget: StepBudget,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[nn.Linear, list[float]]:
    """CTC over the world's words (blank = the padding id 0); the encoder is frozen afterwards.
    Returns the CTC head (to measure the encoder's own recognition) and the loss per step."""
    torch.manual_seed(seed)
    head = nn.Linear(encoder.config.hidden_size, vocab_size)
    optimizer, schedule = _optimizer(list(encoder.parameters()) + list(head.parameters()), budget)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    order = np.random.default_rng([seed, 13])
    losses = []
    encoder.train()
    for step in range(budget.steps):
        chosen = order.choice(len(features), size=min(budget.batch_size, len(features)), replace=False)
        mask = feature_mask[chosen]
        frames = encoder(input_features=features[chosen], attention_mask=mask).last_hidden_state
        frame_lengths = encoder._get_subsampling_output_length(mask.sum(-1)).long()
        log_probs = head(frames).log_softmax(-1).transpose(0, 1)  # (frames, batch, vocab)
        targets = [torch.tensor(transcripts[i]) for i in chosen]
        loss = ctc(
            log_probs,
            torch.cat(targets),
            frame_lengths.clamp(max=log_probs.shape[0]),
            torch.tensor([len(t) for t in targets]),
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(encoder.parameters()) + list(head.parameters()), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if progress is not None:
            progress(step, loss.item())
    encoder.eval().requires_grad_(False)
    return head.eval(), losses


@torch.no_grad()
def ctc_greedy_transcripts(
    encoder: PreTrainedModel, head: nn.Linear, features: torch.Tensor, feature_mask: torch.Tensor
) -> list[list[int]]:
    """The speech encoder's own recognition: per utterance, the best token per frame, repeats merged
    and blanks (id 0) dropped."""
    frames = encoder(input_features=features, attention_mask=feature_mask).last_hidden_state
    lengths = encoder._get_subsampling_output_length(feature_mask.sum(-1)).long().clamp(max=frames.shape[1])
    best = head(frames).argmax(-1)
    return [ctc_collapse(row[:length].tolist()) for row, length in zip(best, lengths, strict=True)]


def ctc_collapse(frame_ids: list[int], blank: int = 0) -> list[int]:
    """CTC's reading of per-frame tokens: runs merged, then blanks dropped (a blank between two
    equal tokens keeps both)."""
    merged = [token for index, token in enumerate(frame_ids) if index == 0 or token != frame_ids[index - 1]]
    return [token for token in merged if token != blank]


@torch.no_grad()
def attribute_accuracy(
    encoder: PreTrainedModel,
    heads: AttributeHeads | MotionHeads,
    inputs: torch.Tensor,
    labels: dict[str, torch.Tensor],
) -> dict[str, float]:
    """Each head's accuracy on `inputs` (images, clouds, sounds; for `MotionHeads`, video frames flattened)."""
    logits = heads(encoder_tokens(encoder, inputs))
    return {name: (logits[name].argmax(-1) == labels[name]).float().mean().item() for name in logits}
