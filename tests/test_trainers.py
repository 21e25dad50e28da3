"""Training stages on the tiny model and a tiny local dataset made in `tmp_path`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TrainingArguments

from xllm import XLLMForConditionalGeneration
from xllm.manifests import example_conversation, load_manifest, mix_datasets
from xllm.testing import tiny_config, tiny_model_and_processor
from xllm.trainers.data import XLLMDataCollator
from xllm.trainers.stage2_alignment import AlignmentTrainer, init_video_from_image
from xllm.trainers.stage3_instruction_tuning import InstructionTuningTrainer

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


def write_image_manifest(folder, repeats: int = 2):
    (folder / "media").mkdir(parents=True, exist_ok=True)
    rows = []
    for name, rgb in COLOURS.items():
        Image.new("RGB", (32, 32), rgb).save(folder / "media" / f"{name}.png")
        user = [{"type": "image"}, {"type": "text", "text": "what colour is it ?"}]
        rows.append(
            {
                "images": f"media/{name}.png",
                "messages": [
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": [{"type": "text", "text": f"it is {name}"}]},
                ],
            }
        )
    path = folder / "images.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows * repeats))
    return path


def write_video_manifest(folder):
    """Two short videos (solid colours) in a CSV with `prompt` / `response` columns."""
    from torchcodec.encoders import VideoEncoder

    (folder / "media").mkdir(parents=True, exist_ok=True)
    lines = ["videos,prompt,response"]
    for name in ("red", "blue"):
        frames = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
        frames[:] = torch.tensor(COLOURS[name], dtype=torch.uint8).view(3, 1, 1)
        VideoEncoder(frames, frame_rate=2).to_file(str(folder / "media" / f"{name}.mp4"))
        lines.append(f"media/{name}.mp4,describe the video,{name} video")
    path = folder / "videos.csv"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def image_manifest(tmp_path_factory):
    return write_image_manifest(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def video_manifest(tmp_path_factory):
    return write_video_manifest(tmp_path_factory.mktemp("videos"))


def training_args(output_dir, arguments_class=TrainingArguments, **overrides) -> TrainingArguments:
    defaults = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        max_steps=8,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        use_cpu=True,
        seed=0,
        lr_scheduler_type="constant",
        disable_tqdm=True,
    )
    defaults.update(overrides)
    return arguments_class(**defaults)


def frozen_snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}


def losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


# ---------------------------------------------------------------- data


def test_manifest_paths_resolve_relative_to_the_manifest_and_decode_as_images(image_manifest):
    dataset = load_manifest(image_manifest)
    example = dataset[0]
    assert isinstance(example["images"], Image.Image)
    assert example["images"].getpixel((0, 0)) == COLOURS["red"]


def test_manifest_path_outside_its_folder_is_refused_unless_allowed(tmp_path, image_manifest):
    manifest = tmp_path / "elsewhere.jsonl"
    outside = str(image_manifest.parent / "media" / "red.png")
    manifest.write_text(
        json.dumps({"images": "../" * 8 + outside.lstrip("/"), "prompt": "a", "response": "b"})
    )
    with pytest.raises(ValueError, match="outside the manifest folder"):
        load_manifest(manifest)
    assert isinstance(load_manifest(manifest, allow_outside_root=True)[0]["images"], Image.Image)


def test_collator_labels_only_the_assistant_answer(image_manifest):
    _, processor = tiny_model_and_processor()
    batch = XLLMDataCollator(processor)([load_manifest(image_manifest)[0]])
    answer = processor.tokenizer.decode(batch["labels"][0][batch["labels"][0] != -100])
    assert answer.split() == ["it", "is", "red", "</s>"]
    assert batch["pixel_values"].shape == (1, 3, 32, 32)


def test_mixed_streaming_sources_give_image_and_video_batches(image_manifest, video_manifest):
    _, processor = tiny_model_and_processor()
    mixed = mix_datasets(
        [load_manifest(image_manifest, streaming=True), load_manifest(video_manifest, streaming=True)], [1, 1]
    )
    examples = list(mixed.take(6))
    kinds = {("image" if e["images"] is not None else "video") for e in examples}
    assert kinds == {"image", "video"}
    batch = XLLMDataCollator(processor)(examples)
    assert batch["pixel_values_videos"].shape[1:] == (4, 3, 32, 32)
    assert batch["labels"].shape == batch["input_ids"].shape


def test_mixing_ratios_set_how_often_each_source_is_drawn(image_manifest, video_manifest):
    images, videos = load_manifest(image_manifest), load_manifest(video_manifest)
    mixed = mix_datasets([images, videos], [9, 1], stopping_strategy="first_exhausted")
    image_rows = sum(messages is not None for messages in mixed["messages"])
    video_rows = sum(prompt is not None for prompt in mixed["prompt"])
    assert image_rows > 2 * video_rows


def test_shuffled_modality_order_keeps_every_media_part():
    torch.manual_seed(1)
    example = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": "and"}, {"type": "video"}],
            },
            {"role": "assistant", "content": "yes"},
        ],
        "images": "IMAGE",
        "videos": "VIDEO",
    }
    from xllm.trainers.data import shuffle_media_parts

    orders = {
        tuple(p["type"] for p in shuffle_media_parts(example_conversation(example))[0]["content"])
        for _ in range(20)
    }
    assert orders == {("image", "text", "video"), ("video", "text", "image")}


# ---------------------------------------------------------------- stages 2 and 3


def alignment_trainer(image_manifest, output_dir, model=None, trainer_class=AlignmentTrainer, **kwargs):
    if model is None:
        model, processor = tiny_model_and_processor()
    else:
        _, processor = tiny_model_and_processor()
    trainer_kwargs = {k: kwargs.pop(k) for k in ("modalities", "lora_config") if k in kwargs}
    return trainer_class(
        model,
        args=training_args(output_dir, **kwargs),
        train_dataset=load_manifest(image_manifest),
        data_collator=XLLMDataCollator(processor),
        processing_class=processor,
        **trainer_kwargs,
    )


def steerable_tiny_model():
    """The tiny model with a frozen LM head whose logits can move (a 0.02-std head keeps the random
    LLM's outputs near uniform, whatever the interface feeds it)."""
    model, _ = tiny_model_and_processor()
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)
    return model


def test_alignment_trains_only_the_chosen_interface_and_loss_drops(image_manifest, tmp_path):
    model = steerable_tiny_model()
    trainer = alignment_trainer(
        image_manifest, tmp_path, model=model, modalities=("image",), max_steps=12, learning_rate=1e-2
    )
    assert {name.split(".")[2] for name, p in model.named_parameters() if p.requires_grad} == {"image"}
    frozen = frozen_snapshot(model)
    trainer.train()
    history = losses(trainer)
    assert np.mean(history[-3:]) < 0.85 * history[0]
    assert all(torch.equal(frozen[name], p) for name, p in model.named_parameters() if name in frozen)
    assert "loss_lm" in trainer.state.log_history[0]
    assert trainer.state.log_history[0]["loss_lm"] == pytest.approx(history[0], rel=1e-4)


def test_gradient_accumulation_one_by_four_equals_four_by_one(image_manifest, tmp_path):
    weights = []
    for batch_size, accumulation in ((4, 1), (1, 4)):
        trainer = alignment_trainer(
            image_manifest,
            tmp_path / f"{batch_size}x{accumulation}",
            max_steps=2,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            learning_rate=1e-3,
        )
        trainer.train()
        weights.append(trainer.model.model.interfaces["image"].state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, atol=1e-5, rtol=1e-5)


def test_resume_reproduces_the_uninterrupted_run_from_a_trainable_only_checkpoint(image_manifest, tmp_path):
    common = dict(max_steps=4, per_device_train_batch_size=2, save_strategy="steps", save_steps=2)
    full = alignment_trainer(image_manifest, tmp_path / "full", **common)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-2"
    assert sorted(p.name for p in checkpoint.glob("*.safetensors")) == ["trainable_model.safetensors"]
    resumed = alignment_trainer(image_manifest, tmp_path / "resumed", **common)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    np.testing.assert_allclose(losses(resumed), losses(full), atol=1e-6)
    assert resumed.state.log_history[2]["loss_lm"] == pytest.approx(losses(full)[2], abs=1e-6)
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, atol=1e-6, rtol=0)

    resumed.save_model(str(tmp_path / "export"))
    exported = XLLMForConditionalGeneration.from_pretrained(tmp_path / "export")
    torch.testing.assert_close(
        exported.state_dict()["model.interfaces.image.adapter.weight"],
        resumed.model.model.interfaces["image"].adapter.weight,
    )


def test_video_interface_starts_as_a_copy_of_the_image_interface():
    model, _ = tiny_model_and_processor()
    init_video_from_image(model)
    image, video = model.model.interfaces["image"].state_dict(), model.model.interfaces["video"].state_dict()
    assert all(torch.equal(image[name], video[name]) for name in image)


def test_lora_instruction_tuning_saves_adapters_and_merges_to_the_same_logits(image_manifest, tmp_path):
    from xllm.trainers.stage3_instruction_tuning import default_lora_config

    trainer = alignment_trainer(
        image_manifest,
        tmp_path,
        trainer_class=InstructionTuningTrainer,
        lora_config=default_lora_config(),
        max_steps=6,
    )
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert any("lora_" in name for name in trainable) and any(".interfaces." in name for name in trainable)
    assert not any("encoders" in name for name in trainable)
    trainer.train()
    history = losses(trainer)
    assert history[-1] < history[0]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    trainer.model.eval()
    with torch.no_grad():
        lora_logits = trainer.model(**batch).logits
    trainer.save_model(str(tmp_path / "export"))
    assert (tmp_path / "export" / "lora_adapter" / "adapter_config.json").is_file()
    merged = XLLMForConditionalGeneration.from_pretrained(tmp_path / "export").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, lora_logits, atol=1e-5, rtol=1e-5)

    from peft import PeftModel

    base, _ = tiny_model_and_processor()
    base.model.interfaces.load_state_dict(merged.model.interfaces.state_dict())
    reloaded = PeftModel.from_pretrained(base, tmp_path / "export" / "lora_adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, lora_logits, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- stage 1


def test_causal_text_mask_lets_text_see_queries_and_only_earlier_text():
    from xllm.trainers.stage1_interface_pretraining import causal_text_mask

    allowed = causal_text_mask(torch.tensor([[1, 1, 0]]), num_queries=2, dtype=torch.float32)[0, 0] == 0
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 0],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)


def stage_one_model():
    """The tiny model with its image Q-Former initialised at a std suited to its width (32): with
    BERT's 0.02, attention and feed-forward updates are ~1% of the residual stream, so every
    caption's [CLS] is nearly the same vector and the contrastive term sits at ln(batch)."""
    config = tiny_config()
    config.image_interface_config.initializer_range = 0.1
    torch.manual_seed(0)
    return XLLMForConditionalGeneration(config)


def test_contrastive_gradient_reaches_the_query_tokens_and_the_text_path():
    from xllm.trainers.stage1_interface_pretraining import QFormerPretrainingCollator, build_pretraining_model

    heads = build_pretraining_model(stage_one_model(), "image")
    heads.requires_grad_(True)
    examples = [
        {"images": Image.new("RGB", (32, 32), rgb), "response": f"it is {n}"} for n, rgb in COLOURS.items()
    ]
    _, processor = tiny_model_and_processor()
    heads(**QFormerPretrainingCollator(processor)(examples)).loss_terms["itc"].backward()
    qformer = heads.interface.qformer
    for parameter in (heads.interface.query_tokens, qformer.word_embeddings.weight, heads.text_proj.weight):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert heads.temperature.grad is not None


def test_repeated_captions_are_positives_and_never_hard_negatives():
    from xllm.trainers.stage1_interface_pretraining import same_text_pairs, sample_hard_negatives

    input_ids = torch.tensor([[2, 5, 3], [2, 6, 3], [2, 5, 3]])
    positives = same_text_pairs(input_ids)
    assert positives.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    similarity = torch.tensor([[0.0, -9.0, 9.0], [0.0, 0.0, 0.0], [9.0, -9.0, 0.0]])
    torch.manual_seed(0)
    for _ in range(20):
        negatives = sample_hard_negatives(similarity, positives)
        assert not positives[torch.arange(3), negatives].any()


def test_interface_pretraining_lowers_every_term_it_can_and_its_checkpoint_loads_into_stage_two(
    image_manifest, tmp_path
):
    from xllm.trainers.stage1_interface_pretraining import (
        TEMPERATURE_RANGE,
        InterfacePretrainingTrainer,
        QFormerPretrainingCollator,
        load_interface_checkpoint,
    )

    _, processor = tiny_model_and_processor()
    dataset = load_manifest(image_manifest).map(
        lambda row: {"response": row["messages"][1]["content"][0]["text"]}
    )
    trainer = InterfacePretrainingTrainer(
        stage_one_model(),
        training_args(tmp_path, max_steps=20, learning_rate=3e-3),
        modality="image",
        train_dataset=dataset,
        data_collator=QFormerPretrainingCollator(processor),
    )
    heads = trainer.model
    assert not any(p.requires_grad for p in heads.encoder.parameters())
    frozen = frozen_snapshot(heads)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(term in logged[0] for term in ("loss_itc", "loss_itm", "loss_itg"))
    assert np.mean([e["loss_itc"] for e in logged[-3:]]) < 0.5 * logged[0]["loss_itc"]
    assert logged[-1]["loss_itg"] < 0.5 * logged[0]["loss_itg"]
    assert logged[-1]["loss"] < 0.8 * logged[0]["loss"]
    assert logged[0]["loss"] == pytest.approx(
        sum(logged[0][f"loss_{t}"] for t in ("itc", "itm", "itg")), rel=1e-5
    )
    assert TEMPERATURE_RANGE[0] <= heads.temperature.item() <= TEMPERATURE_RANGE[1]
    assert all(torch.equal(frozen[name], p) for name, p in heads.named_parameters() if name in frozen)

    trainer.save_model(str(tmp_path / "interface"))
    stage_two, _ = tiny_model_and_processor(seed=1)
    load_interface_checkpoint(stage_two, "image", str(tmp_path / "interface"))
    torch.testing.assert_close(stage_two.model.interfaces["image"].query_tokens, heads.interface.query_tokens)


TONES = {"red": 300, "green": 600, "blue": 900, "yellow": 1200}


def write_speech_manifest(folder):
    """Spoken "sentences" whose words are 0.25 s tones (one pitch per word), as WAV files + JSONL."""
    from scipy.io import wavfile

    (folder / "media").mkdir(parents=True, exist_ok=True)
    time = np.arange(4000) / 16000
    rows = []
    for index, words in enumerate(
        (["red", "green"], ["blue"], ["yellow", "red", "blue"], ["green", "yellow"])
    ):
        waveform = np.concatenate([0.3 * np.sin(2 * np.pi * TONES[word] * time) for word in words])
        wavfile.write(folder / "media" / f"{index}.wav", 16000, waveform.astype(np.float32))
        rows.append({"speech": f"media/{index}.wav", "response": " ".join(words)})
    path = folder / "speech.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def test_cformer_pretraining_learns_to_recognise_speech_and_its_checkpoint_loads_into_stage_two(tmp_path):
    from xllm.trainers.stage1_interface_pretraining import (
        InterfacePretrainingTrainer,
        SpeechRecognitionCollator,
        load_interface_checkpoint,
    )

    model, processor = tiny_model_and_processor()
    trainer = InterfacePretrainingTrainer(
        model,
        training_args(tmp_path, max_steps=12, learning_rate=3e-3),
        modality="speech",
        wrapper_kwargs={"ctc_weight": 0.5},
        train_dataset=load_manifest(write_speech_manifest(tmp_path)),
        data_collator=SpeechRecognitionCollator(processor),
    )
    heads = trainer.model
    frozen = frozen_snapshot(heads)
    assert not any(p.requires_grad for p in heads.encoder.parameters())
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged[-1]["loss_asr"] < 0.5 * logged[0]["loss_asr"]
    assert logged[-1]["loss_quantity"] < logged[0]["loss_quantity"]
    assert logged[-1]["loss_ctc"] < logged[0]["loss_ctc"]
    assert logged[0]["loss"] == pytest.approx(
        sum(logged[0][f"loss_{t}"] for t in ("asr", "quantity", "ctc")), rel=1e-5
    )
    assert all(torch.equal(frozen[name], p) for name, p in heads.named_parameters() if name in frozen)

    trainer.save_model(str(tmp_path / "interface"))
    stage_two, _ = tiny_model_and_processor(seed=1)
    load_interface_checkpoint(stage_two, "speech", str(tmp_path / "interface"))
    torch.testing.assert_close(
        stage_two.model.interfaces["speech"].cif.weight_predictor.conv.weight,
        heads.interface.cif.weight_predictor.conv.weight,
    )


def test_transcript_tokens_and_cif_target_lengths_line_up():
    from xllm.trainers.stage1_interface_pretraining import SpeechRecognitionCollator

    _, processor = tiny_model_and_processor()
    examples = [{"speech": np.zeros(8000, np.float32), "response": text} for text in ("red green blue", "it")]
    batch = SpeechRecognitionCollator(processor)(examples)
    assert batch["speech_target_lengths"].tolist() == [3, 1]
    assert (batch["labels"] != -100).sum(1).tolist() == [3, 1]
    assert processor.tokenizer.decode(batch["labels"][0]) == "red green blue"


def test_saving_mid_run_exports_a_merged_model_and_leaves_the_trainers_model_training(
    image_manifest, tmp_path
):
    from xllm.trainers.stage3_instruction_tuning import default_lora_config

    trainer = alignment_trainer(
        image_manifest,
        tmp_path,
        trainer_class=InstructionTuningTrainer,
        lora_config=default_lora_config(),
        max_steps=2,
    )
    trainer.train()
    peft_model = trainer.model
    lora_before = {name: p.detach().clone() for name, p in peft_model.named_parameters() if "lora_" in name}
    merged = trainer.export_model(trainer.accelerator.unwrap_model(trainer.model), str(tmp_path / "mid-run"))
    assert trainer.model is peft_model and hasattr(trainer.model, "merge_and_unload")  # still the LoRA model
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    after = dict(peft_model.named_parameters())
    assert all(torch.equal(after[name], value) for name, value in lora_before.items())
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    peft_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, peft_model(**batch).logits, atol=1e-5, rtol=1e-5)
    trainer.args.max_steps = 4
    trainer.train(resume_from_checkpoint=None)  # training goes on with the adapters
    assert any("lora_" in name for name, p in trainer.model.named_parameters() if p.requires_grad)
