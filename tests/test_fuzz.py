"""Property tests: random mixes of modalities, text lengths and batch sizes through the processor and
the tiny model. Valid inputs give outputs of the right shapes; a placeholder/media mismatch gives the
documented ValueError. `XLLM_FUZZ_EXAMPLES` sets the number of examples (CI: 15, derandomized;
`make fuzz`: many, random)."""

import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from xllm.processing.processor_modalities import MODALITIES as PROCESSOR_MODALITIES
from xllm.processing.processor_modalities import placeholder
from xllm.testing import TINY_POINTS, TINY_WORDS

FUZZ_EXAMPLES = int(os.environ.get("XLLM_FUZZ_EXAMPLES", "15"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize="XLLM_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SAMPLING_RATE = 16000
MODALITIES = tuple(PROCESSOR_MODALITIES)


def random_medium(modality: str, seed: int):
    """One valid input of `modality` with random size/length (grayscale images and short videos/clouds too)."""
    rng = np.random.default_rng(seed)
    if modality == "image":
        height, width = rng.integers(1, 48, size=2)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        return Image.fromarray(pixels).convert(rng.choice(["RGB", "L", "RGBA"]))
    if modality == "video":
        return rng.integers(0, 256, (rng.integers(1, 7), 24, 24, 3), dtype=np.uint8)
    if modality in ("speech", "audio"):
        samples = int(rng.uniform(0.1, 1.5) * SAMPLING_RATE)
        return (0.1 * rng.standard_normal(samples)).astype(np.float32)
    return rng.normal(size=(rng.integers(1, 2 * TINY_POINTS), 3))


@st.composite
def batches(draw):
    """(texts, media by modality, placeholders per modality): each sample has random words with
    random placeholders in random places."""
    texts, media = [], {modality: [] for modality in MODALITIES}
    for _ in range(draw(st.integers(1, 3))):
        words = draw(st.lists(st.sampled_from(TINY_WORDS), max_size=20))
        for modality in draw(st.lists(st.sampled_from(MODALITIES), max_size=3)):
            words.insert(draw(st.integers(0, len(words))), placeholder(modality))
            media[modality].append(random_medium(modality, draw(st.integers(0, 2**16))))
        texts.append(" ".join(words))
    return texts, media


def expected_tokens_per_item(modality: str, inputs, num_query_tokens: int, num_frames: int) -> list[int]:
    if modality == "speech":
        return [1] * inputs["speech_features"].shape[0]  # CIF decides the length inside the model
    if modality == "audio":
        return (inputs["audio_window_mask"].sum(1) * num_query_tokens).tolist()
    if modality == "video":
        return [num_query_tokens * num_frames] * inputs["pixel_values_videos"].shape[0]
    key = {"image": "pixel_values", "point_cloud": "point_clouds"}[modality]
    return [num_query_tokens] * inputs[key].shape[0]


def process(processor, texts, media):
    """The processor's outputs; None after checking the documented error when a sample is empty."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the documented repairs (repeated frames, points)
        media_kwargs = {PROCESSOR_MODALITIES[m].keyword: items for m, items in media.items() if items}
        if all(text.strip() for text in texts):
            return processor(text=texts, **media_kwargs)
        with pytest.raises(ValueError, match="`text` must give at least one token per sample"):
            processor(text=texts, **media_kwargs)
        return None


@FUZZ
@given(batch=batches())
def test_processor_gives_one_block_of_the_right_length_per_medium(tiny, batch):
    model, processor = tiny
    texts, media = batch
    inputs = process(processor, texts, media)
    if inputs is None:
        return
    queries, frames = model.config.image_interface_config.num_query_tokens, model.config.num_video_frames
    assert inputs["input_ids"].shape == inputs["attention_mask"].shape
    assert inputs["input_ids"].shape[0] == len(texts)
    assert inputs["qformer_input_ids"].shape[0] == len(texts)
    for modality, items in media.items():
        placeholder_tokens = int((inputs["input_ids"] == processor.placeholder_ids[modality]).sum())
        expected = expected_tokens_per_item(modality, inputs, queries, frames) if items else []
        assert len(expected) == len(items)
        assert placeholder_tokens == sum(expected)
    if media["image"]:
        assert inputs["pixel_values"].shape == (len(media["image"]), 3, 32, 32)
    if media["video"]:
        assert inputs["pixel_values_videos"].shape == (len(media["video"]), frames, 3, 32, 32)
    if media["point_cloud"]:
        assert inputs["point_clouds"].shape == (len(media["point_cloud"]), TINY_POINTS, 3)


@FUZZ
@given(batch=batches())
def test_model_forward_gives_finite_logits_for_every_position(tiny, batch):
    model, processor = tiny
    texts, media = batch
    inputs = process(processor, texts, media)
    if inputs is None:
        return
    with torch.no_grad():
        outputs = model(**inputs)
    # Speech placeholders are spliced to CIF's length: the model returns the mask of what the LLM saw.
    attention_mask = inputs["attention_mask"] if outputs.attention_mask is None else outputs.attention_mask
    assert outputs.logits.shape == (*attention_mask.shape, model.config.text_config.vocab_size)
    assert torch.isfinite(outputs.logits).all()


@FUZZ
@given(batch=batches(), data=st.data())
def test_a_missing_placeholder_is_the_documented_value_error(tiny, batch, data):
    _, processor = tiny
    texts, media = batch
    extra = data.draw(st.sampled_from(MODALITIES))
    media[extra].append(random_medium(extra, seed=0))  # one medium more than the text has placeholders
    media_kwargs = {PROCESSOR_MODALITIES[m].keyword: items for m, items in media.items() if items}
    with pytest.raises(ValueError, match=rf"<{extra}> placeholder\(s\) but \d+ {extra} input"):
        processor(text=texts, **media_kwargs)  # counts are checked before anything is decoded
