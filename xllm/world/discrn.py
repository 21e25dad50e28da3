"""DisCRn-style cross-modal comparisons: "which of the two is red ?" over two items.

A pair joins one item from each of two pools and asks about an attribute both pools share
(images and point clouds share colour and size; sounds and videos share speed). The asked value
is the target item's, and the other item is drawn among those with a *different* value, so
exactly one of the two answers the question. Answers alternate first / second (balanced to
one pair), and the pools swap places every two pairs, so each modality comes first half the time.

A cross-modal test set (`build_discrn_test_sets`) uses the items of one test split only; the text-only examples
(`text_comparisons`) that teach the language model the task use captions drawn over every
attribute combination (text only: no media is involved, see `random_descriptions`).
"""

from collections.abc import Mapping

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets

from .vocabulary import (
    COMPARISON_ANSWERS,
    COMPARISON_QUESTIONS,
    comparison_prompt,
    comparison_question,
    random_descriptions,
)

# Pair type -> the attributes both modalities have, with the same words for their values.
SHARED_ATTRIBUTES = {("image", "point_cloud"): ("colour", "size"), ("audio", "video"): ("speed",)}


def _candidates_with_other_value(pool: list[dict], attribute: str) -> dict[str, np.ndarray]:
    """value -> indices of the pool items whose `attribute` is not that value."""
    values = np.array([item["attributes"][attribute] for item in pool])
    return {value: np.flatnonzero(values != value) for value in np.unique(values)}


def comparison_pairs(
    pools: tuple[list[dict], list[dict]],
    attributes: tuple[str, ...],
    count: int,
    rng: np.random.Generator,
    max_tries: int = 100,
) -> list[dict]:
    """`count` pairs over two pools of items (dicts with "attributes" and "caption").

    Each pair is a dict: first_pool (0 or 1, the pool the first item comes from), first, second
    (the items), attribute, question and answer ("first" or "second").
    """
    if not pools[0] or not pools[1]:
        raise ValueError(f"pools must both be non-empty, got sizes {len(pools[0])} and {len(pools[1])}")
    candidates = [{name: _candidates_with_other_value(pool, name) for name in attributes} for pool in pools]
    pairs = []
    for index in range(count):
        answer_position = index % 2  # 0: the target comes first
        first_pool = (index // 2) % 2
        target_pool = first_pool if answer_position == 0 else 1 - first_pool
        target, other, attribute = _draw_target_and_other(
            pools, candidates, target_pool, attributes, rng, max_tries
        )
        first, second = (target, other) if answer_position == 0 else (other, target)
        question = comparison_question(
            target["attributes"][attribute], int(rng.integers(len(COMPARISON_QUESTIONS)))
        )
        pairs.append(
            {
                "first_pool": first_pool,
                "first": first,
                "second": second,
                "attribute": attribute,
                "question": question,
                "answer": COMPARISON_ANSWERS[answer_position],
            }
        )
    return pairs


def _draw_target_and_other(pools, candidates, target_pool, attributes, rng, max_tries):
    """A random target item, a random attribute, and an item of the other pool that differs on it."""
    other_pool = 1 - target_pool
    for _ in range(max_tries):
        target = pools[target_pool][rng.integers(len(pools[target_pool]))]
        attribute = attributes[rng.integers(len(attributes))]
        others = candidates[other_pool][attribute].get(target["attributes"][attribute])
        if others is None:  # the other pool never has this value: every item differs
            others = np.arange(len(pools[other_pool]))
        if others.size:
            return target, pools[other_pool][others[rng.integers(others.size)]], attribute
    raise ValueError(f"pools have no two items that differ on any of {attributes} after {max_tries} tries")


def text_comparisons(count: int, seed: int = 0) -> Dataset:
    """Text-only comparison examples for training the language model.

    For each pair type of `SHARED_ATTRIBUTES`, descriptions of both modalities (every attribute
    combination, see `random_descriptions`) are pooled and paired, so one example may compare two
    images, an image and a point cloud, or two point clouds. Columns: instruction ("<question>
    first : <caption> second : <caption>"), answer, question, first_caption, second_caption and
    attribute.
    """
    rng = np.random.default_rng([seed, 7])
    examples = []
    for type_index, (modalities, attributes) in enumerate(SHARED_ATTRIBUTES.items()):
        type_count = count // len(SHARED_ATTRIBUTES) + (type_index < count % len(SHARED_ATTRIBUTES))
        pool = [item for modality in modalities for item in random_descriptions(modality, type_count, rng)]
        examples += [
            _text_example(pair) for pair in comparison_pairs((pool, pool), attributes, type_count, rng)
        ]
    return Dataset.from_list([examples[i] for i in rng.permutation(len(examples))])


def build_discrn_test_sets(
    test_sets: Mapping[str, Dataset], count: int, seed: int = 0, stream: tuple[int, ...] = ()
) -> DatasetDict:
    """The cross-modal test set: `count` pairs per pair type, from the given test splits (of one
    test set: held-out combinations or in-distribution); `stream` names the random stream of the
    pairs, so that two test sets of one world draw their pairs independently.

    One dataset per pair type ("image_point_cloud", "audio_video") with both media columns (named
    by modality), their ids, first_modality (which of the two is the first option), attribute,
    question, answer, the two captions in question order and caption_prompt (the caption baseline's
    text-only prompt).
    """
    parts = {}
    for type_index, (modalities, attributes) in enumerate(SHARED_ATTRIBUTES.items()):
        pools = tuple(_described_items(test_sets[modality]) for modality in modalities)
        pairs = comparison_pairs(
            pools, attributes, count, np.random.default_rng([seed, 11, type_index, *stream])
        )
        parts["_".join(modalities)] = _pair_dataset(pairs, modalities, test_sets)
    return DatasetDict(parts)


def _described_items(dataset: Dataset) -> list[dict]:
    """The rows of `dataset` without media (id, attributes, caption), each with its row index."""
    rows = dataset.select_columns(["id", "attributes", "caption"]).to_list()
    return [dict(row, index=index) for index, row in enumerate(rows)]


def _pair_dataset(
    pairs: list[dict], modalities: tuple[str, str], test_sets: Mapping[str, Dataset]
) -> Dataset:
    # The item of pool p is the first option when the pair's first_pool is p.
    items = [[pair["first"] if pair["first_pool"] == p else pair["second"] for pair in pairs] for p in (0, 1)]
    columns = {"id": [f"{'_'.join(modalities)}-{i:05d}" for i in range(len(pairs))]}
    columns["first_modality"] = [modalities[pair["first_pool"]] for pair in pairs]
    for modality, pool_items in zip(modalities, items, strict=True):
        columns[f"{modality}_id"] = [item["id"] for item in pool_items]
    for name in ("attribute", "question", "answer"):
        columns[name] = [pair[name] for pair in pairs]
    columns["first_caption"] = [pair["first"]["caption"] for pair in pairs]
    columns["second_caption"] = [pair["second"]["caption"] for pair in pairs]
    columns["caption_prompt"] = [
        comparison_prompt(pair["question"], pair["first"]["caption"], pair["second"]["caption"])
        for pair in pairs
    ]
    media = [
        test_sets[modality]
        .select([item["index"] for item in pool_items])
        .select_columns([modality])
        .flatten_indices()
        for modality, pool_items in zip(modalities, items, strict=True)
    ]
    return concatenate_datasets([*media, Dataset.from_dict(columns)], axis=1)


def _text_example(pair: dict) -> dict:
    first_caption, second_caption = pair["first"]["caption"], pair["second"]["caption"]
    return {
        "instruction": comparison_prompt(pair["question"], first_caption, second_caption),
        "answer": pair["answer"],
        "question": pair["question"],
        "first_caption": first_caption,
        "second_caption": second_caption,
        "attribute": pair["attribute"],
    }
