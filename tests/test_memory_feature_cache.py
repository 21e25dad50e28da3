"""Encoder features computed in memory (`MemoryFeatureCache`): media held in memory (the demo's) are
encoded once, and a batch collated from their keys gives the loss of the batch collated from the media.

Eager attention, as in test_feature_cache.py: PyTorch's CPU `scaled_dot_product_attention` depends on the
batch's size at the 1e-7 level, and the cache encodes in batches of its own."""

import numpy as np
import pytest
import torch
from conftest import random_image, random_video

from xllm.demo.data import chat_example
from xllm.testing import tiny_model_and_processor
from xllm.trainers.data import XLLMDataCollator
from xllm.trainers.feature_cache import FeatureCaches, MemoryFeatureCache


def media_items(modality: str, count: int) -> list:
    rng = np.random.default_rng(len(modality))
    if modality == "image":
        return [random_image(seed) for seed in range(count)]
    if modality == "video":
        return [random_video(9, seed) for seed in range(count)]  # the processor samples 4 of 9 frames
    if modality == "point_cloud":
        return [rng.standard_normal((64, 6)).astype(np.float32) for _ in range(count)]
    seconds = 1.5 if modality == "audio" else 0.8  # a sound of three windows; an utterance
    return [
        {"array": rng.standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1, "sampling_rate": 16000}
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_model_and_processor()
    model.set_attn_implementation("eager")
    return model, processor


def examples(modality: str, media: list, transcripts: list[str]) -> list[dict]:
    return [
        chat_example(modality, item, "describe it", "a red circle", transcript)
        for item, transcript in zip(media, transcripts, strict=True)
    ]


@pytest.mark.parametrize("modality", ["image", "video", "audio", "point_cloud", "speech"])
def test_a_batch_from_memory_features_has_the_loss_of_the_batch_from_the_media(tiny, modality):
    model, processor = tiny
    media = media_items(modality, 5)
    keys = [f"{modality}:{index}" for index in range(len(media))]
    cache = MemoryFeatureCache(model, processor, modality, dict(zip(keys, media, strict=True)), batch_size=2)
    transcripts = ["a red circle"] * 3 if modality == "speech" else [None] * 3
    column = "transcript" if modality == "speech" else None
    live = XLLMDataCollator(processor, speech_transcript_column=column)(
        examples(modality, media[1:4], transcripts)
    )
    cached_collator = XLLMDataCollator(
        processor, speech_transcript_column=column, feature_caches=FeatureCaches([cache])
    )
    cached = cached_collator(examples(modality, keys[1:4], transcripts))
    assert "encoder_features" in cached and modality in cached["encoder_features"]
    assert torch.equal(live["input_ids"], cached["input_ids"])
    with torch.no_grad():
        live_loss = model(**live).loss
        cached_loss = model(**cached).loss
    assert abs(live_loss.item() - cached_loss.item()) <= 1e-6


def test_memory_features_are_each_items_own_whatever_the_batch(tiny):
    model, processor = tiny
    media = media_items("audio", 3)
    one_batch = MemoryFeatureCache(model, processor, "audio", {"a": media[0], "b": media[1], "c": media[2]})
    alone = MemoryFeatureCache(model, processor, "audio", {"c": media[2]})
    assert list(one_batch.index) == ["a", "b", "c"]
    assert one_batch.windows("c") == alone.windows("c") == 3  # 1.5 s: three 0.64 s windows
    torch.testing.assert_close(one_batch.item("c"), alone.item("c"), atol=1e-5, rtol=0)


def test_a_key_the_memory_cache_does_not_hold_is_named(tiny):
    model, processor = tiny
    cache = MemoryFeatureCache(model, processor, "image", {"image:0": random_image(0)})
    with pytest.raises(ValueError, match=r"no image features under 'image:7'"):
        cache.item("image:7")


def test_a_comparison_of_two_cached_items_has_the_loss_of_the_live_comparison(tiny):
    """Stage 3's "which of the two" examples hold two items of one modality: each placeholder must get
    its own item's features, in the order the prompt names them."""
    from xllm.demo.data import comparison_example

    model, processor = tiny
    media = media_items("point_cloud", 4)
    keys = [f"point_cloud:{index}" for index in range(len(media))]
    cache = MemoryFeatureCache(model, processor, "point_cloud", dict(zip(keys, media, strict=True)))
    pairs = [(2, 0, "first"), (1, 3, "second")]

    def batch(values, **collator):
        examples = [
            comparison_example(
                "which is red ?", ("point_cloud", values[a]), ("point_cloud", values[b]), answer
            )
            for a, b, answer in pairs
        ]
        return XLLMDataCollator(processor, **collator)(examples)

    live, cached = batch(media), batch(keys, feature_caches=FeatureCaches([cache]))
    swapped = batch(keys[::-1], feature_caches=FeatureCaches([cache]))  # other items: another loss
    with torch.no_grad():
        live_loss, cached_loss, swapped_loss = (model(**b).loss.item() for b in (live, cached, swapped))
    assert abs(live_loss - cached_loss) <= 1e-6
    assert abs(live_loss - swapped_loss) > 1e-5  # the tiny random model reads its items faintly: 4e-5
