"""XLLMForConditionalGeneration: placeholders, batching, caching, freezing, video, instructions, configs."""

import pytest
import torch
from conftest import random_image, random_video

from xllm import XLLMConfig, XLLMForConditionalGeneration
from xllm.testing import (
    tiny_config,
    tiny_interface_config,
    tiny_model_and_processor,
    tiny_text_config,
    tiny_vision_config,
)

MIXED_TEXTS = ["<image> what colour is the shape in the image ?", "describe it"]


def greedy(model, inputs, max_new_tokens: int = 6, **kwargs) -> torch.Tensor:
    """Exactly `max_new_tokens` greedy tokens (EOS is not allowed to stop a random model early)."""
    return model.generate(
        **inputs, do_sample=False, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, **kwargs
    )


def new_tokens(sequences: torch.Tensor, prompt_length: int) -> torch.Tensor:
    return sequences[:, prompt_length:]


@pytest.mark.parametrize("text_model_type", ["llama", "qwen2", "opt"])
@pytest.mark.parametrize("texts", [MIXED_TEXTS, MIXED_TEXTS[::-1]], ids=["image_first", "text_only_first"])
def test_batched_logits_match_one_by_one_under_left_padding(text_model_type, texts):
    model, processor = tiny_model_and_processor(text_model_type)
    image = random_image(0)
    batch = processor(images=[image], text=texts)
    assert (batch["attention_mask"][:, 0] == 0).any(), "the shorter sample must be left-padded"
    singles = [processor(images=[image] if "<image>" in text else None, text=text) for text in texts]
    with torch.no_grad():
        batch_logits = model(**batch).logits  # (2, seq, vocab)
        for row, single in enumerate(singles):
            single_logits = model(**single).logits  # (1, length, vocab)
            length = single_logits.shape[1]
            torch.testing.assert_close(batch_logits[row, -length:], single_logits[0], atol=1e-5, rtol=1e-5)


def test_each_image_reads_the_instruction_of_its_own_sample():
    model, processor = tiny_model_and_processor()
    texts = ["what colour is it ? <image>", "describe it", "<image> which shape is on the left ?"]
    images = [random_image(0), random_image(1)]
    batch = processor(images=images, text=texts)
    with torch.no_grad():
        batch_features = model(**batch).modality_features["image"]  # (2, queries, width)
        for item, row in enumerate((0, 2)):
            single = processor(images=[images[item]], text=texts[row])
            torch.testing.assert_close(
                batch_features[item], model(**single).modality_features["image"][0], atol=1e-5, rtol=1e-5
            )


def test_batched_greedy_text_matches_one_by_one(tiny_model, tiny_processor, image):
    batch = tiny_processor(images=[image], text=MIXED_TEXTS)
    singles = [tiny_processor(images=[image], text=MIXED_TEXTS[0]), tiny_processor(text=MIXED_TEXTS[1])]
    batch_generated = new_tokens(greedy(tiny_model, batch), batch["input_ids"].shape[1])
    for row, single in enumerate(singles):
        single_generated = new_tokens(greedy(tiny_model, single), single["input_ids"].shape[1])
        assert tiny_processor.batch_decode(batch_generated[row : row + 1]) == tiny_processor.batch_decode(
            single_generated
        )


def test_greedy_generation_with_cache_equals_without(tiny_model, tiny_processor, image):
    inputs = tiny_processor(images=[image], text=MIXED_TEXTS)
    with_cache = greedy(tiny_model, inputs, use_cache=True)
    without_cache = greedy(tiny_model, inputs, use_cache=False)
    assert torch.equal(with_cache, without_cache)


def test_generation_never_writes_media_placeholders(tiny_model, tiny_processor, image):
    inputs = tiny_processor(images=[image], text=MIXED_TEXTS)
    generated = new_tokens(greedy(tiny_model, inputs, max_new_tokens=8), inputs["input_ids"].shape[1])
    placeholder_ids = [tiny_model.config.placeholder_token_id(m) for m in tiny_model.config.modalities]
    assert set(tiny_model.generation_config.suppress_tokens) == set(placeholder_ids)
    assert not torch.isin(generated, torch.tensor(placeholder_ids)).any()


def test_gradients_reach_only_interface_parameters_when_encoders_and_llm_are_frozen(tiny_processor, image):
    model, _ = tiny_model_and_processor(seed=1)
    inputs = tiny_processor(images=[image], text=["<image> what colour is it ? red"])
    labels = inputs["input_ids"].masked_fill(inputs["input_ids"] == model.config.image_token_id, -100)
    model(**inputs, labels=labels).loss.backward()

    for name, parameter in model.named_parameters():
        is_interface = name.startswith("model.interfaces.")
        assert parameter.requires_grad == is_interface, name
        if not is_interface:
            assert parameter.grad is None, name
    image_interface = model.model.interfaces["image"]
    for name in ("query_tokens", "encoder_layer_norm.weight", "adapter.weight"):
        gradient = image_interface.get_parameter(name).grad
        assert gradient is not None and gradient.abs().sum() > 0, name
    report = model.trainable_parameter_report()
    assert report["language_model"]["trainable"] == 0 and report["encoders.vision"]["trainable"] == 0
    assert report["interfaces.image"]["trainable"] == report["interfaces.image"]["total"] > 0


def test_freeze_and_unfreeze_by_component_name():
    model, _ = tiny_model_and_processor()
    model.unfreeze("language_model")
    model.freeze("interfaces.video")
    report = model.trainable_parameter_report()
    assert report["language_model"]["trainable"] == report["language_model"]["total"]
    assert report["interfaces.video"]["trainable"] == 0
    assert report["interfaces.image"]["trainable"] > 0
    with pytest.raises(ValueError, match="no_such_part"):
        model.freeze("no_such_part")


def test_placeholder_count_mismatch_raises_with_both_numbers(tiny_model, tiny_processor, image):
    image_token = tiny_model.config.image_token_id
    input_ids = torch.tensor([[image_token] * 3 + [20, 21]])  # 3 placeholders; one image needs 4
    pixel_values = tiny_processor.image_processor([image], return_tensors="pt")["pixel_values"]
    qformer_input_ids = torch.tensor([[2, 20, 3]])
    with pytest.raises(ValueError, match=r"3 image placeholder.*4") as error:
        tiny_model(input_ids=input_ids, pixel_values=pixel_values, qformer_input_ids=qformer_input_ids)
    assert "1 image input" in str(error.value)


def test_precomputed_features_of_the_wrong_length_raise_with_both_numbers(tiny_model):
    input_ids = torch.tensor([[tiny_model.config.image_token_id] * 4 + [20]])
    features = torch.zeros(1, 5, tiny_model.config.text_config.hidden_size)
    with pytest.raises(ValueError, match=r"4 image placeholder.*5"):
        tiny_model(input_ids=input_ids, mm_encoder_outputs={"image": features})


@pytest.mark.parametrize("num_frames", [1, 4, 7])
def test_video_uses_frames_times_queries_tokens(tiny_model, tiny_processor, num_frames):
    inputs = tiny_processor(
        videos=[random_video(7)], text=["<video> what is moving ?"], num_frames=num_frames
    )
    num_queries = tiny_model.config.video_interface_config.num_query_tokens
    assert inputs["pixel_values_videos"].shape[:2] == (1, num_frames)
    assert int((inputs["input_ids"] == tiny_model.config.video_token_id).sum()) == num_frames * num_queries
    with torch.no_grad():
        outputs = tiny_model(**inputs)
    width = tiny_model.config.text_config.hidden_size
    assert outputs.modality_features["video"].shape == (1, num_frames * num_queries, width)
    assert torch.isfinite(outputs.logits).all()


def test_video_features_are_per_frame_outputs_in_time_order(tiny_model, tiny_processor):
    inputs = tiny_processor(videos=[random_video(3)], text=["<video> what is moving ?"], num_frames=3)
    pixels = inputs["pixel_values_videos"]  # (1, 3, C, H, W)
    instruction = {name: inputs[name] for name in ("qformer_input_ids", "qformer_attention_mask")}
    num_queries = tiny_model.config.video_interface_config.num_query_tokens
    with torch.no_grad():
        video_features = tiny_model.get_video_features(pixels, **instruction).pooler_output
        for frame in range(3):
            frame_features = tiny_model.get_video_features(
                pixels[:, frame : frame + 1], **instruction
            ).pooler_output
            block = video_features[:, frame * num_queries : (frame + 1) * num_queries]
            torch.testing.assert_close(block, frame_features, atol=1e-5, rtol=1e-5)


def image_features(model, pixel_values, instruction_ids):
    with torch.no_grad():
        return model.get_image_features(
            pixel_values,
            qformer_input_ids=instruction_ids,
            qformer_attention_mask=torch.ones_like(instruction_ids),
        ).pooler_output


def test_instruction_aware_interface_reads_the_instruction(tiny_processor, image):
    model, _ = tiny_model_and_processor(instruction_aware=True)
    pixel_values = tiny_processor.image_processor([image], return_tensors="pt")["pixel_values"]
    colour = image_features(model, pixel_values, torch.tensor([[2, 15, 16, 3]]))
    shape = image_features(model, pixel_values, torch.tensor([[2, 30, 31, 3]]))
    assert (colour - shape).abs().max() > 1e-5
    with pytest.raises(ValueError, match="qformer_input_ids"):
        model.get_image_features(pixel_values)


def test_interface_without_instruction_awareness_ignores_the_instruction(tiny_processor, image):
    model, _ = tiny_model_and_processor(instruction_aware=False)
    pixel_values = tiny_processor.image_processor([image], return_tensors="pt")["pixel_values"]
    colour = image_features(model, pixel_values, torch.tensor([[2, 15, 16, 3]]))
    shape = image_features(model, pixel_values, torch.tensor([[2, 30, 31, 3]]))
    with torch.no_grad():
        without = model.get_image_features(pixel_values).pooler_output
    assert torch.equal(colour, shape)
    assert torch.equal(colour, without)


def test_text_only_batch_runs_and_generates(tiny_model, tiny_processor):
    inputs = tiny_processor(text=["describe it", "what colour is the small circle ?"])
    assert "pixel_values" not in inputs
    generated = greedy(tiny_model, inputs, max_new_tokens=3)
    assert generated.shape == (2, inputs["input_ids"].shape[1] + 3)


@pytest.mark.parametrize(
    ("text_model_type", "vision_model_type"),
    [
        ("llama", "clip_vision_model"),
        ("qwen2", "clip_vision_model"),
        ("opt", "clip_vision_model"),
        ("llama", "siglip_vision_model"),
        ("llama", "blip_2_vision_model"),
    ],
)
def test_llm_and_vision_families_build_run_generate_and_reload(text_model_type, vision_model_type, tmp_path):
    model, processor = tiny_model_and_processor(text_model_type, vision_model_type)
    inputs = processor(images=[random_image(1)], text=MIXED_TEXTS)
    with torch.no_grad():
        logits = model(**inputs).logits
    generated = greedy(model, inputs, max_new_tokens=3)
    assert generated.shape == (2, inputs["input_ids"].shape[1] + 3)

    model.save_pretrained(tmp_path)
    reloaded = XLLMForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.text_config.model_type == text_model_type
    assert reloaded.config.vision_config.model_type == vision_model_type
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, logits, atol=1e-5, rtol=1e-5)


def config_fields(**overrides) -> dict:
    """The keyword arguments of the tiny config, with some replaced."""
    config = tiny_config()
    fields = dict(
        text_config=tiny_text_config(vocab_size=config.text_config.vocab_size),
        vision_config=tiny_vision_config(),
        image_interface_config=tiny_interface_config(),
        image_token_id=config.image_token_id,
    )
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(vision_config=None), "vision_config"),
        (dict(image_token_id=None), "image_token_id"),
        (dict(image_token_id=10_000), "image_token_id"),
        (dict(image_interface_config=tiny_interface_config(encoder_hidden_size=48)), "encoder_hidden_size"),
        (dict(image_interface_config=tiny_interface_config(output_hidden_size=48)), "output_hidden_size"),
        (dict(num_video_frames=0), "num_video_frames"),
    ],
)
def test_inconsistent_config_raises_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        XLLMConfig(**config_fields(**overrides))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(kind="transformer"), "kind"),
        (dict(num_attention_heads=5), "num_attention_heads"),
        (dict(cross_attention_frequency=0), "cross_attention_frequency"),
        (dict(num_query_tokens=0), "num_query_tokens"),
    ],
)
def test_inconsistent_interface_config_raises_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_interface_config(**overrides)


def test_config_fills_interface_widths_from_encoder_and_llm():
    config = XLLMConfig(**config_fields())
    assert config.image_interface_config.encoder_hidden_size == config.vision_config.hidden_size
    assert config.image_interface_config.output_hidden_size == config.text_config.hidden_size
    assert config.modalities == ("image",)


def test_training_mode_keeps_frozen_encoders_in_eval_mode():
    model, _ = tiny_model_and_processor()
    model.train()
    assert model.training and model.model.interfaces["image"].training
    assert not any(encoder.training for encoder in model.model.encoders.values())
    model.unfreeze("encoders.vision")
    model.train()
    assert model.model.encoders["vision"].training  # a trainable encoder trains


def test_gradient_checkpointing_gives_the_same_gradients(image):
    model, processor = tiny_model_and_processor()
    batch = processor(images=[image], text=["<image> describe the image"])
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)

    def interface_gradients():
        model.zero_grad()
        model.train()
        model(**batch, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = interface_gradients()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert all(layer.gradient_checkpointing for layer in model.model.interfaces["image"].qformer.layers)
    checkpointed = interface_gradients()
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-5, rtol=1e-5)


def test_beam_search_reads_each_samples_media_in_each_of_its_beams():
    """transformers repeats tensors row by row; media rows are items, repeated per sample instead."""
    model, processor = tiny_model_and_processor()
    images = [random_image(0), random_image(1), random_image(2)]
    texts = ["<image> <image> describe it", "<image> what colour is it ?"]
    batch = processor(images=images, text=texts)
    seen = []
    original = model.model.get_modality_features

    def recording(modality, media, *args, **kwargs):
        seen.append(media[:, 0, 0, 0].clone())
        return original(modality, media, *args, **kwargs)

    model.model.get_modality_features = recording
    batched = model.generate(**batch, num_beams=2, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    first = batch["pixel_values"][:, 0, 0, 0]
    assert seen[0].tolist() == first[[0, 1, 0, 1, 2, 2]].tolist()  # sample 0's two images in both its beams
    for row, (text, items) in enumerate(zip(texts, (images[:2], images[2:]), strict=True)):
        single = processor(images=items, text=text)
        alone = model.generate(**single, num_beams=2, max_new_tokens=4, min_new_tokens=4, do_sample=False)
        assert processor.batch_decode(
            batched[row : row + 1, batch["input_ids"].shape[1] :]
        ) == processor.batch_decode(alone[:, single["input_ids"].shape[1] :])
