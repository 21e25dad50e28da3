"""Speech through the whole model: encoders, CIF lengths, splicing, training and generation."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

from xllm import XLLMForConditionalGeneration
from xllm.testing import tiny_config, tiny_model_and_processor, tiny_processor


def waveform(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)


@pytest.fixture(scope="module")
def model_and_processor():
    return tiny_model_and_processor()


def test_batched_generation_with_speech_and_images_equals_one_by_one(model_and_processor):
    model, processor = model_and_processor
    image = Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype("uint8"))
    texts = ["<speech> what is said ?", "<image> describe <speech> the image", "<speech> and <speech> ?"]
    speech = [waveform(1.0, 1), waveform(0.6, 2), waveform(0.3, 3), waveform(0.8, 4)]
    batch = processor(text=texts, images=[image], speech=speech)
    batched_ids = model.generate(**batch, max_new_tokens=5, do_sample=False)
    batched_logits = model(**batch).logits
    speech_of_sample = [[speech[0]], [speech[1]], speech[2:]]
    for index, text in enumerate(texts):
        single = processor(
            text=[text], images=[image] if "<image>" in text else None, speech=speech_of_sample[index]
        )
        single_ids = model.generate(**single, max_new_tokens=5, do_sample=False)
        new_batched = batched_ids[index, batch["input_ids"].shape[1] :]
        new_single = single_ids[0, single["input_ids"].shape[1] :]
        assert processor.decode(new_batched, skip_special_tokens=True) == processor.decode(
            new_single, skip_special_tokens=True
        )
        single_logits = model(**single).logits[0, -1]
        torch.testing.assert_close(batched_logits[index, -1], single_logits, atol=1e-5, rtol=1e-5)


def test_training_fires_the_transcript_length_and_aligns_labels(model_and_processor):
    model, processor = model_and_processor
    transcripts = ["a red circle on the left", "two"]
    batch = processor(
        text=["<speech> answer", "what <speech> answer"],
        speech=[waveform(1.2, 5), waveform(0.5, 6)],
        speech_transcripts=transcripts,
        padding_side="right",
    )
    speech = model.model.get_speech_features(
        batch["speech_features"], batch["speech_attention_mask"], batch["speech_target_lengths"]
    )
    assert speech.token_lengths.tolist() == [6, 1]
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model.train()
    try:
        outputs = model(**batch, labels=labels)
    finally:
        model.eval()
    # Sample 0: "<speech> answer" -> 6 speech tokens + "answer"; the labels follow the splice.
    assert outputs.labels.shape == outputs.logits.shape[:2]
    assert outputs.labels[0, :6].tolist() == [-100] * 6
    assert outputs.labels[0, 6] == batch["input_ids"][0, 1]
    assert outputs.attention_mask.sum(1).tolist() == [7, 3]
    outputs.loss.backward()
    predictor = model.model.interfaces["speech"].cif.weight_predictor
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in predictor.parameters())
    model.zero_grad()


def test_get_speech_features_returns_embeddings_and_lengths(model_and_processor):
    model, processor = model_and_processor
    batch = processor(text=["<speech>", "<speech>"], speech=[waveform(1.0, 7), waveform(0.4, 8)])
    speech = model.model.get_speech_features(batch["speech_features"], batch["speech_attention_mask"])
    assert speech.token_embeddings.shape[0] == 2
    assert speech.token_embeddings.shape[2] == model.config.text_config.hidden_size
    assert speech.token_lengths.shape == (2,)
    assert speech.quantity_loss is None


SPEECH_ENCODERS = [
    ("whisper", WhisperFeatureExtractor(feature_size=80)),  # 30 s log-mel; the encoder ignores masks
    ("wav2vec2-conformer", Wav2Vec2FeatureExtractor(return_attention_mask=True)),  # raw waveform
    ("parakeet_encoder", None),  # conv subsampling + conformer on 80-bin fbank (the default)
]


def speech_model(speech_model_type, feature_extractor):
    torch.manual_seed(0)
    model = XLLMForConditionalGeneration(tiny_config(speech_model_type=speech_model_type)).eval()
    processor = tiny_processor()
    if feature_extractor is not None:
        processor.speech_feature_extractor = feature_extractor
    return model, processor


@pytest.mark.parametrize("speech_model_type, feature_extractor", SPEECH_ENCODERS)
def test_cif_sees_only_the_frames_of_the_real_input_for_each_encoder(speech_model_type, feature_extractor):
    model, processor = speech_model(speech_model_type, feature_extractor)
    short, long = waveform(0.5, 9), waveform(1.5, 10)
    batch = processor(text=["<speech>", "<speech>"], speech=[short, long])
    encoded = model.model.encode_media("speech", batch["speech_features"], batch["speech_attention_mask"])
    features, frame_mask = encoded.features, encoded.frame_mask
    short_frames, long_frames = frame_mask.sum(1).tolist()
    assert 0 < short_frames < long_frames <= features.shape[1]
    assert long_frames / short_frames == pytest.approx(3, rel=0.15)  # frames follow the true durations
    if speech_model_type != "wav2vec2-conformer":  # its conformer convolutions mix padding into real frames
        alone = processor(text=["<speech>"], speech=[short])
        get = model.model.get_speech_features
        tokens_alone = get(alone["speech_features"], alone["speech_attention_mask"])
        tokens_padded = get(batch["speech_features"], batch["speech_attention_mask"])
        length = int(tokens_alone.token_lengths[0])
        assert int(tokens_padded.token_lengths[0]) == length
        torch.testing.assert_close(
            tokens_padded.token_embeddings[0, :length],
            tokens_alone.token_embeddings[0, :length],
            atol=1e-4,
            rtol=1e-4,
        )


@pytest.mark.parametrize("bad", [np.zeros(0, dtype=np.float32), np.full(1600, np.nan, dtype=np.float32)])
def test_empty_or_nan_speech_is_a_clear_error(model_and_processor, bad):
    _, processor = model_and_processor
    with pytest.raises(ValueError, match="speech"):
        processor(text=["<speech>"], speech=[bad])
