"""Stage-0 encoder pre-training of the demo: the augmentations that keep encoders from reading one
attribute through another, and which half of a batch teaches which attribute."""

import numpy as np
import pytest
import torch
from transformers import BlipImageProcessor

from xllm.demo.encoders import (
    MotionHeads,
    attribute_accuracy,
    ctc_collapse,
    motion_objective,
    pretrain_on_attributes,
    recoloured_images,
    recoloured_point_clouds,
    shuffled_frequencies,
    vision_encoder,
)
from xllm.demo.settings import StepBudget
from xllm.world.images import BACKGROUND_RGB, render_image


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_recoloured_images_change_the_colour_and_keep_the_background_and_the_outline():
    processor = BlipImageProcessor(size={"height": 32, "width": 32})
    image = render_image(
        {"colour": "red", "shape": "star", "size": "large", "position": "centre"},
        np.random.default_rng(0),
        side=32,
    )
    pixels = processor([image] * 8, return_tensors="pt")["pixel_values"]  # (8, 3, 32, 32)
    mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    recoloured = recoloured_images(pixels, _generator(), mean, std)

    def rgb(values):
        return values * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)

    before, after = rgb(pixels), rgb(recoloured)
    background = torch.tensor(BACKGROUND_RGB).view(1, 3, 1, 1) / 255
    outline_before = (before - background).abs().amax(1) > 0.05
    outline_after = (after - background).abs().amax(1) > 0.02
    assert torch.allclose(after[:, :, 0, 0], before[:, :, 0, 0], atol=1e-5)  # background kept
    assert (outline_after == outline_before).float().mean() > 0.97  # the same star
    centre_colours = after[:, :, 16, 16]
    assert torch.cdist(centre_colours, centre_colours).max() > 0.2  # items got different colours


def test_recoloured_point_clouds_keep_the_geometry_and_paint_each_cloud_one_colour():
    points = torch.rand(16, 64, 6)
    recoloured = recoloured_point_clouds(points, _generator())
    assert torch.equal(recoloured[..., :3], points[..., :3])
    assert torch.equal(recoloured[..., 3:], recoloured[:, :1, 3:].expand(-1, 64, -1))
    greys = (recoloured[:, 0, 3:].std(-1) < 1e-6).sum().item()
    assert 0 < greys < 16  # both random greys and random colours


def test_shuffled_frequencies_keep_each_frame_and_its_timing():
    features = torch.randn(4, 50, 16)
    shuffled = shuffled_frequencies(features, _generator())
    assert torch.equal(shuffled.sort(-1).values, features.sort(-1).values)  # same values per frame
    assert not torch.equal(shuffled, features)
    # one permutation per sound: bin j of every frame comes from the same source bin
    source = (shuffled[0, 0].unsqueeze(-1) == features[0, 0].unsqueeze(0)).float().argmax(-1)
    assert torch.equal(shuffled[0], features[0][:, source])


def test_invariant_attributes_are_learned_from_augmented_items_only():
    """With an augmentation that erases the input, an invariant attribute cannot be learned and
    the others still are (from the untouched half)."""
    torch.manual_seed(0)
    count = 256
    labels = torch.randint(0, 2, (count,))
    inputs = torch.zeros(count, 3, 16, 16)
    inputs[labels == 1] = 1.0  # the label is plain to see
    attributes = {"visible": ("no", "yes"), "invariant": ("no", "yes")}
    encoder = vision_encoder(16)
    heads, _ = pretrain_on_attributes(
        encoder,
        inputs,
        {"visible": labels, "invariant": labels},
        attributes,
        StepBudget(steps=40, batch_size=32, learning_rate=3e-3),
        seed=0,
        augmentation=lambda batch, generator: torch.zeros_like(batch),
        invariant_attributes=("invariant",),
    )
    accuracy = attribute_accuracy(encoder, heads, inputs, {"visible": labels, "invariant": labels})
    assert accuracy["visible"] == 1.0
    assert accuracy["invariant"] < 0.7


def _moving_square_videos(count: int, side: int = 16) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Two-frame videos of a white square that moves left/right/up/down by 1 (slowly) or 4 (quickly) pixels."""
    generator = np.random.default_rng(0)
    steps = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}
    direction = torch.from_numpy(generator.integers(0, 4, count))
    speed = torch.from_numpy(generator.integers(0, 2, count))
    videos = torch.zeros(count, 2, 3, side, side)
    for index in range(count):
        start = generator.integers(5, side - 9, 2)
        move = np.array(steps[int(direction[index])]) * (1 if speed[index] == 0 else 4)
        for frame, (x, y) in enumerate((start, start + move)):
            videos[index, frame, :, y : y + 4, x : x + 4] = 1.0
    return videos, {"direction": direction, "speed": speed}


def test_motion_heads_read_each_video_from_its_frames_in_order():
    heads = MotionHeads(
        width=8, frames=2, attributes={"direction": ("a", "b", "c", "d"), "speed": ("s", "q")}
    )
    tokens = torch.randn(3 * 2, 5, 8)  # 3 videos of 2 frames, 5 tokens each
    logits = heads(tokens)
    assert logits["direction"].shape == (3, 4) and logits["speed"].shape == (3, 2)
    swapped = tokens.view(3, 2, 5, 8).flip(1).flatten(0, 1)  # the same frames in the other order
    assert not torch.allclose(heads(swapped)["direction"], logits["direction"])


def test_motion_objective_teaches_the_encoder_motion_beside_its_image_attributes():
    """Trained with the motion objective as `auxiliary`, the encoder's motion heads tell direction and speed
    of moving squares, which no single frame shows; without it they stay near chance."""
    torch.manual_seed(0)
    videos, labels = _moving_square_videos(256)
    images = videos[:, 0]
    budget = StepBudget(steps=150, batch_size=32, learning_rate=3e-3)
    accuracies = {}
    for with_motion in (True, False):
        encoder = vision_encoder(16)
        motion = motion_objective(encoder, videos, labels, batch_size=32, seed=0)
        pretrain_on_attributes(
            encoder,
            images,
            {"lit": (images.sum((1, 2, 3)) > 0).long()},
            {"lit": ("no", "yes")},
            budget,
            seed=0,
            auxiliary=motion if with_motion else None,
        )
        accuracies[with_motion] = attribute_accuracy(encoder, motion[0], videos.flatten(0, 1), labels)
    assert accuracies[True]["direction"] > 0.8 and accuracies[True]["speed"] > 0.8, accuracies
    assert accuracies[False]["direction"] < 0.5, accuracies


def test_negative_motion_videos_are_refused_with_the_value():
    from xllm.demo.settings import DemoSettings

    with pytest.raises(ValueError, match="encoder_motion_videos must be 0 .* got -1"):
        DemoSettings(encoder_motion_videos=-1)


@pytest.mark.parametrize("fraction, augmented", [(0.5, 16), (0.75, 24)])
def test_augmented_fraction_sets_how_much_of_each_batch_is_augmented(fraction, augmented):
    seen = []

    def augmentation(batch, generator):
        seen.append(len(batch))
        return batch

    pretrain_on_attributes(
        vision_encoder(16),
        torch.rand(64, 3, 16, 16),
        {"visible": torch.randint(0, 2, (64,))},
        {"visible": ("no", "yes")},
        StepBudget(steps=2, batch_size=32, learning_rate=1e-3),
        seed=0,
        augmentation=augmentation,
        augmented_fraction=fraction,
    )
    assert seen == [augmented, augmented]


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_augmented_fraction_outside_zero_to_one_is_refused_with_the_value(fraction):
    from xllm.demo.settings import DemoSettings

    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        DemoSettings(encoder_augmented_fraction={"point_cloud": fraction})
    with pytest.raises(ValueError, match=str(fraction)):
        pretrain_on_attributes(
            vision_encoder(16),
            torch.rand(4, 3, 16, 16),
            {"visible": torch.zeros(4, dtype=torch.long)},
            {"visible": ("no", "yes")},
            StepBudget(steps=1, batch_size=4, learning_rate=1e-3),
            seed=0,
            augmentation=lambda batch, generator: batch,
            augmented_fraction=fraction,
        )


def test_augmented_fraction_of_an_unknown_encoder_is_refused_with_the_choices():
    from xllm.demo.settings import DemoSettings

    with pytest.raises(
        ValueError, match=r"keys must be among \('vision', 'audio', 'point_cloud'\), got \['pointcloud'\]"
    ):
        DemoSettings(encoder_augmented_fraction={"pointcloud": 0.75})


def test_ctc_collapse_merges_runs_and_drops_blanks():
    assert ctc_collapse([0, 3, 3, 0, 3, 5, 5, 0, 0]) == [3, 3, 5]
    assert ctc_collapse([]) == [] and ctc_collapse([0, 0]) == []


def test_qformer_vocabulary_does_not_depend_on_the_order_of_get_vocab(tmp_path, monkeypatch):
    from xllm.demo.language_model import world_tokenizer
    from xllm.demo.pipeline import Demo
    from xllm.demo.settings import DemoSettings

    demo = Demo(DemoSettings(), tmp_path, log=lambda *args: None)
    tokenizer = world_tokenizer()
    expected = demo.processor(tokenizer).qformer_tokenizer.get_vocab()
    reversed_vocab = dict(reversed(list(tokenizer.get_vocab().items())))
    monkeypatch.setattr(tokenizer, "get_vocab", lambda: reversed_vocab)
    assert demo.processor(tokenizer).qformer_tokenizer.get_vocab() == expected
