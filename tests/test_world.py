"""The synthetic world: determinism, held-out splits, DisCRn pairs, media that decode, vocabulary."""

import itertools

import numpy as np
import pytest
import trimesh
from torchcodec.decoders import VideoDecoder

from xllm.world.build import DISCRN_SETS, WorldSizes, build_world
from xllm.world.discrn import SHARED_ATTRIBUTES, text_comparisons
from xllm.world.point_clouds import make_primitive, sample_point_cloud
from xllm.world.sounds import synthesise_sound
from xllm.world.splits import (
    HELD_OUT_CROSSINGS,
    TEST_SETS,
    crossing_key,
    held_out_combinations,
    split_combinations,
)
from xllm.world.videos import DIRECTION_STEPS
from xllm.world.vocabulary import (
    ATTRIBUTES,
    COMPARATIVES,
    MODALITIES,
    caption,
    random_descriptions,
    world_vocabulary,
)

TINY = WorldSizes(
    image=24,
    point_cloud=24,
    video=6,
    audio=6,
    speech=12,
    validation=3,
    test=16,
    test_in_distribution=16,
    discrn_pairs=20,
    points=128,
)
SEED = 3


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"), seed=SEED, sizes=TINY)


def _stored_columns(dataset) -> dict[str, list]:
    """A dataset's undecoded Arrow values (media as the stored file bytes)."""
    return {name: dataset.data.table.column(name).to_pylist() for name in dataset.column_names}


def _all_datasets(world):
    return [(name, split, dataset) for name, splits in world.items() for split, dataset in splits.items()]


def test_same_seed_builds_a_byte_identical_world(world, tmp_path):
    again = build_world(tmp_path, seed=SEED, sizes=TINY)
    for name, split, dataset in _all_datasets(world):
        assert _stored_columns(dataset) == _stored_columns(again[name][split]), (name, split)


def test_train_never_shows_a_held_out_combination_and_test_shows_only_them(world):
    for modality in HELD_OUT_CROSSINGS:
        held_out = held_out_combinations(modality, SEED)
        keys = {
            split: {crossing_key(modality, a) for a in world[modality][split]["attributes"]}
            for split in world[modality]
        }
        assert keys["train"].isdisjoint(held_out), modality
        assert keys["test"] <= held_out and keys["validation"] <= held_out, modality


def test_in_distribution_items_have_only_combinations_that_train_shows(world):
    for modality in HELD_OUT_CROSSINGS:
        trained = {tuple(c.values()) for c in split_combinations(modality, "train", SEED)}
        items = world[modality]["test_in_distribution"]["attributes"]
        assert len(items) == TINY.test_in_distribution
        assert {tuple(a[name] for name in ATTRIBUTES[modality]) for a in items} <= trained, modality
        held_out = held_out_combinations(modality, SEED)
        assert {crossing_key(modality, a) for a in items}.isdisjoint(held_out), modality


@pytest.mark.parametrize("modality", MODALITIES)
def test_in_distribution_items_are_new_draws_not_copies_of_train_items(world, modality):
    media = {"point_cloud": "point_cloud", "speech": "speech"}.get(modality, modality)
    stored = {
        split: _stored_columns(world[modality][split].select_columns([media]))[media]
        for split in ("train", "test_in_distribution")
    }

    def key(value):  # the media bytes: PNG, mp4, wav, or the point array itself
        return repr(value["bytes"]) if isinstance(value, dict) else repr(value)

    train = {key(value) for value in stored["train"]}
    assert not train & {key(value) for value in stored["test_in_distribution"]}, modality


def test_speech_in_distribution_never_repeats_a_train_recording(world):
    def recordings(split):
        rows = world["speech"][split].select_columns(["transcript", "attributes"])
        return {(row["transcript"], row["attributes"]["voice"], row["attributes"]["rate"]) for row in rows}

    assert recordings("test_in_distribution").isdisjoint(recordings("train"))
    trained = {caption(t, c) for t in HELD_OUT_CROSSINGS for c in split_combinations(t, "train", SEED)}
    assert set(world["speech"]["test_in_distribution"]["transcript"]) <= trained


def test_every_attribute_value_still_appears_in_train_combinations():
    for modality in HELD_OUT_CROSSINGS:
        train = split_combinations(modality, "train", SEED)
        for name, values in ATTRIBUTES[modality].items():
            assert {combination[name] for combination in train} == set(values), (modality, name)


def test_speech_test_sentences_are_captions_of_held_out_combinations_only(world):
    held_out_sentences = {
        caption(topic, combination)
        for topic in HELD_OUT_CROSSINGS
        for combination in split_combinations(topic, "test", SEED)
    }
    assert set(world["speech"]["test"]["transcript"]) <= held_out_sentences
    assert set(world["speech"]["train"]["transcript"]).isdisjoint(held_out_sentences)


@pytest.mark.parametrize("test_set", list(TEST_SETS))
@pytest.mark.parametrize("pair", list(SHARED_ATTRIBUTES))
def test_discrn_pairs_are_balanced_test_items_that_differ_on_the_asked_attribute(world, pair, test_set):
    pairs = world[DISCRN_SETS[test_set]]["_".join(pair)]
    assert pairs["answer"].count("first") == pairs["answer"].count("second") == TINY.discrn_pairs // 2
    assert pairs["first_modality"].count(pair[0]) == TINY.discrn_pairs // 2
    test_attributes = {  # the pairs' items come from their own test set's split only
        row["id"]: row["attributes"]
        for modality in pair
        for row in world[modality][TEST_SETS[test_set]].select_columns(["id", "attributes"])
    }
    for row in pairs.remove_columns(list(pair)):
        first_id, second_id = (
            row[f"{m}_id"] for m in (pair if row["first_modality"] == pair[0] else pair[::-1])
        )
        assert first_id in test_attributes and second_id in test_attributes
        first, second = test_attributes[first_id], test_attributes[second_id]
        target = first if row["answer"] == "first" else second
        assert first[row["attribute"]] != second[row["attribute"]]
        word = row["question"].split()[-2]
        assert COMPARATIVES.get(target[row["attribute"]], target[row["attribute"]]) == word


def test_text_comparisons_are_balanced_and_include_held_out_combinations_as_text():
    examples = text_comparisons(count=400, seed=SEED)
    assert examples["answer"].count("first") == examples["answer"].count("second") == 200
    assert all(e["instruction"].startswith(e["question"] + " first : ") for e in examples)
    captions = set(examples["first_caption"]) | set(examples["second_caption"])
    held_out_images = {
        caption(
            "image", {**dict(zip(("colour", "shape"), key, strict=True)), "size": size, "position": place}
        )
        for key in held_out_combinations("image", SEED)
        for size in ATTRIBUTES["image"]["size"]
        for place in ATTRIBUTES["image"]["position"]
    }
    assert captions & held_out_images


def test_random_descriptions_cover_the_whole_attribute_grid():
    items = random_descriptions("point_cloud", 2000, np.random.default_rng(0))
    combinations = {tuple(item["attributes"].values()) for item in items}
    assert len(combinations) == len(list(itertools.product(*ATTRIBUTES["point_cloud"].values())))
    assert all(item["caption"] == caption("point_cloud", item["attributes"]) for item in items)


def test_image_is_a_64_pixel_rgb_picture(world):
    image = world["image"]["train"][0]["image"]
    assert image.mode == "RGB" and image.size == (64, 64)
    assert np.asarray(image).std() > 10


def test_video_decodes_to_its_frame_count_and_moves_in_its_direction(world):
    row = world["video"]["train"][0]
    assert isinstance(row["video"], VideoDecoder)
    frames = row["video"].get_frames_in_range(0, TINY.video_frames).data.float()  # (frames, 3, height, width)
    assert tuple(frames.shape) == (TINY.video_frames, 3, TINY.image_side, TINY.image_side)
    shape_mask = (frames - frames[:, :, :1, :1]).abs().sum(dim=1) > 60  # (frames, height, width)
    rows, columns = np.indices((TINY.image_side, TINY.image_side))
    centres = [(columns[m].mean(), rows[m].mean()) for m in shape_mask.numpy()]
    movement = np.subtract(centres[-1], centres[0])  # (x, y) in pixels
    expected = DIRECTION_STEPS[row["attributes"]["direction"]]
    assert np.dot(movement, expected) > 5 and abs(movement[0] * expected[1] - movement[1] * expected[0]) < 2


def test_speech_is_16_khz_with_audible_energy(world):
    samples = world["speech"]["test"][0]["speech"].get_all_samples()
    assert samples.sample_rate == 16000
    assert samples.data.shape[-1] > 8000 and samples.data.square().mean().sqrt() > 0.01


def test_high_notes_have_a_higher_dominant_frequency_than_low_notes():
    def dominant_hz(pitch):
        waveform = synthesise_sound(
            {"instrument": "flute", "pitch": pitch, "speed": "slowly"}, np.random.default_rng(0)
        )
        return np.argmax(np.abs(np.fft.rfft(waveform))) * 16000 / waveform.size

    assert dominant_hz("high") > 2 * dominant_hz("low")


def test_point_cloud_lies_on_its_mesh_surface(world):
    row = world["point_cloud"]["train"][0]
    points = np.asarray(row["point_cloud"])[:, :3].astype(np.float64)  # (points, 3)
    triangles = row["mesh"].triangles  # (faces, 3, 3)
    pairs = np.broadcast_to(triangles[None], (len(points), *triangles.shape)).reshape(-1, 3, 3)
    closest = trimesh.triangles.closest_point(pairs, np.repeat(points, len(triangles), axis=0))
    distances = np.linalg.norm(closest - np.repeat(points, len(triangles), axis=0), axis=1)
    assert distances.reshape(len(points), len(triangles)).min(axis=1).max() < 1e-5


def test_large_point_clouds_span_about_twice_the_small_ones():
    def span(size):
        rng = np.random.default_rng(0)
        mesh = make_primitive({"colour": "red", "shape": "sphere", "size": size}, rng)
        return np.ptp(sample_point_cloud(mesh, 256, rng)[:, :3], axis=0).max()

    assert 1.5 < span("large") / span("small") < 2.5


def test_every_text_of_the_world_uses_only_vocabulary_words(world):
    vocabulary = set(world_vocabulary())
    texts = []
    for _, _, dataset in _all_datasets({m: world[m] for m in MODALITIES}):
        texts += list(dataset["caption"]) + [t for qa in dataset["qa"] for pair in qa for t in pair.values()]
    for dataset in (d for key in DISCRN_SETS.values() for d in world[key].values()):
        texts += list(dataset["caption_prompt"]) + list(dataset["answer"])
    texts += list(text_comparisons(count=10)["instruction"])
    assert {word for text in texts for word in text.split(" ")} <= vocabulary
    assert len(vocabulary) <= 80


def test_unknown_modality_or_split_is_rejected_with_a_value_error():
    with pytest.raises(ValueError, match="modality"):
        caption("smell", {})
    with pytest.raises(ValueError, match="split"):
        split_combinations("image", "dev", SEED)
