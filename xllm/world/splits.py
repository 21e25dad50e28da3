"""Train / validation / test splits: held-out attribute combinations, and new draws of trained ones.

For each modality one attribute is crossed with one or more others, and about a quarter of those
crossings never appear in train: validation and test contain only them. Every single value still
appears in train, so the test split measures whether a model composes known values in new ways
(e.g. a red star, when train had red circles and blue stars but no red star).

The in-distribution test split (`test_in_distribution`) holds new items of the combinations train
shows: the same combinations, the continuous variation (jitter, rotation, noise, voices) drawn the
same way, from other random generators. It measures what the papers claim (understanding of new
samples); the held-out split measures compositional generalisation on top of it.
"""

import itertools

import numpy as np

from .vocabulary import ATTRIBUTES

# Appended in this order: an item's random generator is seeded by its split's index (build.item_rng),
# so adding a split leaves the items of the others unchanged.
SPLITS = ("train", "validation", "test", "test_in_distribution")
# The splits whose items have held-out combinations only; every other split has train's combinations.
HELD_OUT_SPLITS = ("validation", "test")
# Report name -> split of each test set: what the papers claim first, compositional generalisation second.
TEST_SETS = {"in_distribution": "test_in_distribution", "held_out": "test"}

# modality -> (rows attribute, columns attributes): the crossing from which combinations are held out.
HELD_OUT_CROSSINGS = {
    "image": ("colour", ("shape",)),
    "point_cloud": ("colour", ("shape",)),
    "video": ("colour", ("direction",)),
    "audio": ("instrument", ("pitch", "speed")),
}


def held_out_combinations(modality: str, seed: int) -> frozenset[tuple[str, ...]]:
    """The (row value, *column values) combinations of `modality` that train never shows.

    Row i loses exactly the column (i + shift) mod n_columns, a diagonal of the crossing: each row
    value and each column value keeps at least one combination in train, and the seed picks the
    diagonal.
    """
    if modality not in HELD_OUT_CROSSINGS:
        raise ValueError(f"modality must be one of {sorted(HELD_OUT_CROSSINGS)}, got {modality!r}")
    row_attribute, column_attributes = HELD_OUT_CROSSINGS[modality]
    rows = ATTRIBUTES[modality][row_attribute]
    columns = list(itertools.product(*(ATTRIBUTES[modality][name] for name in column_attributes)))
    shift = int(np.random.default_rng([seed, len(rows), len(columns)]).integers(len(columns)))
    return frozenset((row, *columns[(i + shift) % len(columns)]) for i, row in enumerate(rows))


def crossing_key(modality: str, attributes: dict[str, str]) -> tuple[str, ...]:
    """The values of `attributes` on the held-out crossing of `modality`, e.g. ("red", "star")."""
    row_attribute, column_attributes = HELD_OUT_CROSSINGS[modality]
    return (attributes[row_attribute], *(attributes[name] for name in column_attributes))


def split_combinations(modality: str, split: str, seed: int) -> list[dict[str, str]]:
    """All full attribute combinations allowed in `split`: train and test_in_distribution exclude the
    held-out ones, validation and test contain only them."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    held_out = held_out_combinations(modality, seed)
    names = list(ATTRIBUTES[modality])
    combinations = (
        dict(zip(names, values, strict=True)) for values in itertools.product(*ATTRIBUTES[modality].values())
    )
    wanted_held_out = split in HELD_OUT_SPLITS
    return [c for c in combinations if (crossing_key(modality, c) in held_out) == wanted_held_out]
