"""transformers' conventions, on our own shapes and inputs (the common tests of tests/conformance/ check
them in general): `get_*_features` outputs, call-time options reaching the sub-processors."""

import numpy as np
import pytest
import torch
from conftest import random_image, random_video


def test_audio_features_give_encoder_windows_per_clip_and_interface_tokens(tiny_model, tiny_processor):
    clips = [np.random.default_rng(0).standard_normal(n).astype(np.float32) for n in (8000, 20000)]
    inputs = tiny_processor(audio=clips, text=["<audio> what", "<audio> what"])
    audio, mask = inputs["audio_features"], inputs["audio_window_mask"]  # (clips, windows, ...)
    with torch.no_grad():
        out = tiny_model.get_audio_features(  # one clip per sample: the samples' instructions are the clips'
            audio,
            mask,
            inputs["qformer_input_ids"],
            inputs["qformer_attention_mask"],
            output_hidden_states=True,
        )
    config = tiny_model.config
    patches = out.hidden_states[0].shape[1]
    assert out.last_hidden_state.shape == (2, mask.shape[1], patches, config.audio_config.hidden_size)
    assert not out.last_hidden_state[~mask.bool()].any()  # padded windows are zeros
    queries = config.audio_interface_config.num_query_tokens
    assert out.pooler_output.shape == (2, mask.shape[1] * queries, config.text_config.hidden_size)
    assert len(out.hidden_states) == config.audio_config.num_hidden_layers + 1
    assert out.hidden_states[0].shape[0] == int(mask.sum())  # one row per real window


def test_image_features_pooler_output_is_what_forward_writes_over_the_placeholders(
    tiny_model, tiny_processor
):
    inputs = tiny_processor(images=[random_image(1)], text="<image> what colour is it ?")
    with torch.no_grad():
        features = tiny_model.get_image_features(
            inputs["pixel_values"], inputs["qformer_input_ids"], inputs["qformer_attention_mask"]
        )
        logits = tiny_model(**inputs).logits
        from_features = tiny_model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            mm_encoder_outputs={"image": features},
        ).logits
        as_tuple = tiny_model(**inputs, return_dict=False)
    torch.testing.assert_close(from_features, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(as_tuple[0], logits, atol=1e-5, rtol=0)


def test_encoding_media_keeps_only_the_layer_the_interface_reads(tiny_model, tiny_processor):
    # The other layers are dropped as the encoder runs (transformers' `output_hidden_states=[index]`), so a
    # deep encoder does not hold all its layers; asked for, every layer still comes back.
    inputs = tiny_processor(images=[random_image(1)], text="<image> what")
    pixel_values = inputs["pixel_values"]
    layer = tiny_model.config.image_interface_config.encoder_feature_layer
    with torch.no_grad():
        encoded = tiny_model.model.encode_media("image", pixel_values)
        every_layer = tiny_model.model.encode_media("image", pixel_values, output_hidden_states=True)
        features = tiny_model.get_image_features(
            pixel_values,
            inputs["qformer_input_ids"],
            inputs["qformer_attention_mask"],
            output_hidden_states=True,
        )
    kept = [index for index, state in enumerate(encoded.encoder_outputs.hidden_states) if state is not None]
    assert kept == [layer % len(every_layer.encoder_outputs.hidden_states)]
    torch.testing.assert_close(encoded.features, every_layer.features, atol=0, rtol=0)
    assert all(state is not None for state in features.hidden_states)


def test_inputs_embeds_with_media_give_the_logits_of_input_ids(tiny_model, tiny_processor):
    inputs = tiny_processor(images=[random_image(2)], text=["<image> what colour is it ?", "describe it"])
    embeds = tiny_model.get_input_embeddings()(inputs["input_ids"])
    with torch.no_grad():
        expected = tiny_model(**inputs).logits
        inputs_embeds = {k: v for k, v in inputs.items() if k != "input_ids"}
        got = tiny_model(**inputs_embeds, inputs_embeds=embeds).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_image_options_reach_the_image_processor(tiny_processor):
    image = random_image(4)
    default = tiny_processor(images=[image], text="<image> what")["pixel_values"]
    flat = tiny_processor(images=[image], text="<image> what", do_normalize=False, rescale_factor=2 / 255)
    nested = tiny_processor(
        images=[image], text="<image> what", images_kwargs={"do_normalize": False, "rescale_factor": 2 / 255}
    )
    expected = tiny_processor.image_processor(
        [image], do_normalize=False, rescale_factor=2 / 255, return_tensors="pt"
    )["pixel_values"]
    torch.testing.assert_close(flat["pixel_values"], expected)
    torch.testing.assert_close(nested["pixel_values"], expected)
    assert not torch.equal(default, expected)


def test_an_option_given_twice_is_refused(tiny_processor):
    with pytest.raises(ValueError, match="rescale_factor was passed two times"):
        tiny_processor(
            images=[random_image(5)],
            text="<image> what",
            rescale_factor=0.5,
            images_kwargs={"rescale_factor": 0.25},
        )


def test_chat_template_padding_and_truncation_reach_the_text(tiny_processor):
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what colour is it ?"}]}
    ]
    common = dict(add_generation_prompt=True, tokenize=True, return_dict=True, images=[random_image(6)])
    short = tiny_processor.apply_chat_template(conversation, **common)
    padded = tiny_processor.apply_chat_template(
        conversation, **common, processor_kwargs={"padding": "max_length", "max_length": 40}
    )
    assert padded["input_ids"].shape[1] == 40
    assert padded["attention_mask"].sum() == short["attention_mask"].sum()  # left padding only
    assert torch.equal(padded["input_ids"][:, -short["input_ids"].shape[1] :], short["input_ids"])
    with pytest.raises(ValueError, match="media placeholder"):  # truncation never cuts a media block
        tiny_processor.apply_chat_template(
            conversation, **common, processor_kwargs={"truncation": True, "max_length": 6}
        )


@pytest.mark.parametrize("sampling", [{}, {"do_sample_frames": False}], ids=["sampled", "every_frame"])
def test_token_counts_helper_matches_the_call(tiny_processor, sampling):
    videos = [random_video(7, seed=8), random_video(7, seed=9, size=48)]
    images = [random_image(7), random_image(8, size=48)]
    inputs = tiny_processor(
        text=["<image> <video> what", "<image> <video> what"],
        images=images,
        videos=videos,
        return_mm_token_type_ids=True,
        **sampling,
    )
    counts = tiny_processor._get_num_multimodal_tokens(
        image_sizes=[image.size[::-1] for image in images],
        video_sizes=[video.shape[:3] for video in videos],
        **sampling,
    )
    assert (inputs["mm_token_type_ids"] == 1).sum(-1).tolist() == counts["num_image_tokens"]
    assert (inputs["mm_token_type_ids"] == 2).sum(-1).tolist() == counts["num_video_tokens"]


@pytest.mark.filterwarnings("ignore:.*fbank frames; keeping")
@pytest.mark.filterwarnings("ignore:.*windows; keeping the first")
@pytest.mark.parametrize(
    "windowing", [{}, {"audio_max_windows": 1}, {"num_windows": 2}], ids=["every_window", "capped", "fixed"]
)
def test_audio_token_counts_helper_matches_the_call(tiny_processor, windowing):
    """vLLM's helper counts each sound's LLM tokens from its length alone, as the call lays them out
    (lengths off the hop and window grid, one shorter than a window, one of several windows)."""
    import copy

    processor = copy.deepcopy(tiny_processor)
    call_options = {k: v for k, v in windowing.items() if k != "num_windows"}
    if "num_windows" in windowing:
        processor.audio_feature_extractor.num_windows = windowing["num_windows"]
    rate = processor.audio_feature_extractor.sampling_rate
    lengths = [rate, 4 * rate, int(1.7 * rate) + 50, 12 * rate + 7]
    clips = [np.zeros(length, dtype=np.float32) for length in lengths]
    inputs = processor(
        text=["a sound <audio> what"] * len(clips), audio=clips, return_mm_token_type_ids=True, **call_options
    )
    counts = processor._get_num_multimodal_tokens(audio_lengths=lengths, **call_options)
    from_call = (inputs["mm_token_type_ids"] == 3).sum(-1).tolist()
    assert from_call == counts["num_audio_tokens"]
    if not windowing:  # the lengths matter: the clips take different numbers of windows
        assert len(set(from_call)) > 1


def test_our_outputs_keep_model_output_keys_tuples_and_attributes():
    """`XLLMOutput` writes attributes without ModelOutput's per-write field scan: the keys, the tuple
    and the attributes must be exactly what transformers' own `ModelOutput` gives for the same fields."""
    from dataclasses import dataclass

    from transformers.modeling_outputs import ModelOutput

    from xllm.modeling_xllm.modeling_xllm import XLLMCausalLMOutputWithPast, XLLMModelOutputWithPast

    @dataclass
    class Reference(ModelOutput):  # the same fields as ours, on transformers' base class
        loss: torch.Tensor | None = None
        logits: torch.Tensor | None = None
        past_key_values: object | None = None
        hidden_states: tuple | None = None
        attentions: tuple | None = None
        modality_features: dict | None = None
        attention_mask: torch.Tensor | None = None
        position_ids: torch.Tensor | None = None
        labels: torch.Tensor | None = None
        quantity_loss: torch.Tensor | None = None

    logits, mask = torch.randn(2, 3, 5), torch.ones(2, 3)
    ours = XLLMCausalLMOutputWithPast(logits=logits, attention_mask=mask)
    reference = Reference(logits=logits, attention_mask=mask)
    assert list(ours.keys()) == list(reference.keys()) == ["logits", "attention_mask"]
    assert ours.to_tuple()[0] is logits and len(ours.to_tuple()) == 2
    assert ours.loss is None and ours["attention_mask"] is mask and ours[1] is mask

    ours.loss, reference.loss = torch.tensor(1.0), torch.tensor(1.0)  # a field set later becomes a key
    ours.labels = reference.labels = None  # None stays out of the keys
    ours.note = reference.note = "not a field"  # a plain attribute never becomes a key
    assert list(ours.keys()) == list(reference.keys())
    assert ours.note == "not a field" and "note" not in ours

    hidden = torch.randn(2, 3, 4)
    inner = XLLMModelOutputWithPast(last_hidden_state=hidden, position_ids=mask.long())
    assert list(inner.keys()) == ["last_hidden_state", "position_ids"] and inner[0] is hidden
    # Only the first field given: the case our `__post_init__` leaves to ModelOutput's (key/value pairs).
    only_first = XLLMModelOutputWithPast(last_hidden_state=hidden)
    assert list(only_first.keys()) == ["last_hidden_state"] and only_first[0] is hidden
    pairs = XLLMCausalLMOutputWithPast([("logits", logits), ("attention_mask", mask)])
    reference_pairs = Reference([("logits", logits), ("attention_mask", mask)])
    assert list(pairs.keys()) == list(reference_pairs.keys()) == ["logits", "attention_mask"]
    assert pairs.loss is None and pairs.logits is logits
