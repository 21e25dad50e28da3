"""Cached encoder features: each frozen encoder runs once, stages 1-3 train without it to the same
losses, and a stale cache is refused with the key that changed.

The runs compare with eager attention: PyTorch's CPU `scaled_dot_product_attention` gives results that
depend on the batch's size at the 1e-7 level, so a cache made in batches of 16 and a live batch of 2
would differ there; eager attention is the same whatever the batch, and the losses are then equal to
the last bit."""

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from xllm.modeling_xllm import XLLMForConditionalGeneration
from xllm.testing import tiny_model_and_processor
from xllm.trainers.feature_cache import FeatureCache, build_feature_cache, cache_folder
from xllm.trainers.training_run import run_training


@pytest.fixture(scope="module")
def workspace(world_data, tmp_path_factory):
    """A copy of the exported world (caches are written beside its manifests) and a saved tiny model."""
    folder = tmp_path_factory.mktemp("feature_cache")
    shutil.copytree(world_data, folder / "data")
    model, processor = tiny_model_and_processor()
    model.save_pretrained(folder / "tiny")
    processor.save_pretrained(folder / "tiny")
    return folder


def run(workspace, name: str, cached: list[str] | None = None, steps: int = 20, **config):
    values = dict(
        model_name_or_path=str(workspace / "tiny"),
        attn_implementation="eager",
        output_dir=str(workspace / "runs" / name),
        per_device_train_batch_size=2,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **config,
    )
    if cached:
        values.update(cache_encoder_features=True, cached_modalities=cached)
    path = workspace / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    torch.manual_seed(0)  # stage-1 heads start from the process's RNG, as in a fresh process
    return run_training(str(path))


def losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def manifests(workspace, *keywords: str) -> list[str]:
    return [str(workspace / "data" / f"{keyword}.jsonl") for keyword in keywords]


def assert_same_losses(live, cached):
    assert len(losses(live)) == len(losses(cached)) == 20
    assert max(abs(a - b) for a, b in zip(losses(live), losses(cached), strict=True)) <= 1e-6


def test_stage_two_from_the_cache_gives_the_live_losses_without_loading_the_encoder(workspace):
    config = dict(stage=2, modalities=["image", "video"], datasets=manifests(workspace, "images", "videos"))
    live = run(workspace, "stage2-live", **config)
    cached = run(workspace, "stage2-cached", ["image", "video"], **config)
    assert_same_losses(live, cached)
    assert "vision" not in cached.model.model.encoders
    assert cached.model.trainable_parameter_report()["encoders.vision"] == {
        "trainable": 0,
        "total": 0,
        "loaded": False,
    }
    assert cache_folder(workspace / "data" / "images.jsonl", "image").is_dir()
    exported = XLLMForConditionalGeneration.from_pretrained(workspace / "runs" / "stage2-cached")
    assert "vision" in exported.model.encoders  # the export is complete: the encoder is written back
    original = XLLMForConditionalGeneration.from_pretrained(workspace / "tiny")
    for name, value in original.model.encoders["vision"].state_dict().items():
        assert torch.equal(exported.model.encoders["vision"].state_dict()[name], value)


@pytest.mark.parametrize("modality, keyword", [("image", "images"), ("video", "videos"), ("audio", "audio"),
                                               ("point_cloud", "point_clouds"), ("speech", "speech")])  # fmt: skip
def test_stage_one_from_the_cache_gives_the_live_losses(workspace, modality, keyword):
    config = dict(stage=1, modality=modality, datasets=manifests(workspace, keyword))
    if modality == "speech":
        config["ctc_weight"] = 0.5
    assert_same_losses(
        run(workspace, f"s1-{modality}-live", **config),
        run(workspace, f"s1-{modality}-cached", [modality], **config),
    )


def test_stage_three_mixes_cached_and_live_modalities_with_the_live_losses(workspace):
    config = dict(stage=3, lora_rank=4, datasets=manifests(workspace, "images_qa", "audio_qa", "point_clouds_qa"),
                  rank_dataset_ratios=[[2, 1, 1]])  # fmt: skip
    live = run(workspace, "stage3-live", **config)
    cached = run(workspace, "stage3-cached", ["image", "point_cloud"], **config)
    assert_same_losses(live, cached)
    encoders = cached.accelerator.unwrap_model(cached.model).get_base_model().model.encoders
    assert set(encoders) == {"audio", "speech", "vision"}  # point clouds from the cache; audio live


def test_a_video_cache_holds_every_frame_and_a_sound_cache_every_window(workspace):
    model, processor = tiny_model_and_processor()
    build_feature_cache(workspace / "data" / "videos.jsonl", model, processor, ["video"])
    build_feature_cache(workspace / "data" / "audio.jsonl", model, processor, ["audio"])
    video = FeatureCache(workspace / "data" / "videos.jsonl", model, processor, "video")
    audio = FeatureCache(workspace / "data" / "audio.jsonl", model, processor, "audio")
    assert video.item(next(iter(video.index))).shape == (4, 17, 32)  # 4 frames x 17 tokens x width
    assert audio.item(next(iter(audio.index))).shape[0] == 3  # a 1.5 s sound: three 0.64 s windows


# Stale caches: each key that changes is named, and the cache is never used.


@pytest.fixture
def image_cache(workspace, tmp_path):
    """A manifest of its own (in a folder of its own) with an image cache written by the tiny model."""
    folder = tmp_path / "data"
    shutil.copytree(workspace / "data" / "media" / "image", folder / "media" / "image")
    lines = (workspace / "data" / "images.jsonl").read_text()
    (folder / "images.jsonl").write_text(lines)
    model, processor = tiny_model_and_processor()
    build_feature_cache(folder / "images.jsonl", model, processor, ["image"])
    return folder / "images.jsonl"


def test_a_cache_of_other_encoder_weights_is_refused(image_cache):
    model, processor = tiny_model_and_processor()
    with torch.no_grad():
        next(model.model.encoders["vision"].parameters()).add_(1e-3)
    with pytest.raises(ValueError, match=r"stale: encoder_weights changed"):
        FeatureCache(image_cache, model, processor, "image")


def test_a_cache_of_another_image_size_is_refused(image_cache):
    model, processor = tiny_model_and_processor()
    processor.image_processor.size = {"height": 48, "width": 48}
    with pytest.raises(
        ValueError, match=r"stale: preprocessing.size.height, preprocessing.size.width changed"
    ):
        FeatureCache(image_cache, model, processor, "image")


def test_a_cache_of_an_edited_media_file_is_refused(image_cache):
    model, processor = tiny_model_and_processor()
    first = json.loads(image_cache.read_text().splitlines()[0])["images"]
    path = image_cache.parent / first
    path.write_bytes(path.read_bytes() + b"edited")
    with pytest.raises(ValueError, match=rf"stale: the media file .*{path.name} changed"):
        FeatureCache(image_cache, model, processor, "image")


def test_a_cache_of_another_encoder_layer_is_refused(image_cache):
    model, processor = tiny_model_and_processor()
    model.config.image_interface_config.encoder_feature_layer = -2
    with pytest.raises(ValueError, match=r"stale: encoder_feature_layer changed"):
        FeatureCache(image_cache, model, processor, "image")


def test_the_weights_fingerprint_of_a_left_out_encoder_is_read_from_its_checkpoint(workspace, image_cache):
    full = XLLMForConditionalGeneration.from_pretrained(workspace / "tiny")
    light = XLLMForConditionalGeneration.from_pretrained(workspace / "tiny", without_encoders=["vision"])
    _, processor = tiny_model_and_processor()
    FeatureCache(image_cache, full, processor, "image")  # the tiny model's own cache fits both
    FeatureCache(image_cache, light, processor, "image")
    changed = workspace / "tiny-changed"
    shutil.copytree(workspace / "tiny", changed)
    weights = load_file(changed / "model.safetensors")
    key = next(k for k in weights if k.startswith("model.encoders.vision."))
    weights[key] = weights[key] + 1e-3
    save_file(weights, changed / "model.safetensors", metadata={"format": "pt"})
    other = XLLMForConditionalGeneration.from_pretrained(changed, without_encoders=["vision"])
    with pytest.raises(ValueError, match="encoder_weights changed"):
        FeatureCache(image_cache, other, processor, "image")


def test_training_on_a_stale_cache_is_refused_not_rebuilt(workspace):
    config = dict(stage=2, modalities=["image"], datasets=manifests(workspace, "images"), steps=2)
    run(workspace, "prime", ["image"], **config)  # writes the cache if missing
    key_file = cache_folder(workspace / "data" / "images.jsonl", "image") / "cache_key.json"
    key = json.loads(key_file.read_text())
    key["encoder_feature_layer"] = -3
    key_file.write_text(json.dumps(key))
    with pytest.raises(ValueError, match="stale: encoder_feature_layer changed"):
        run(workspace, "stale", ["image"], **config)
    key["encoder_feature_layer"] = -1
    key_file.write_text(json.dumps(key))


def test_forward_and_beam_search_with_encoder_features_equal_those_with_media():
    model, processor = tiny_model_and_processor()
    batch = processor(images=[torch.rand(3, 32, 32)] * 3, videos=[torch.rand(4, 32, 32, 3)],
                      text=["<image> <image> <video> describe it", "<image> what ?"])  # fmt: skip
    with torch.no_grad():
        image = model.model.encode_media("image", batch["pixel_values"])
        video = model.model.encode_media("video", batch["pixel_values_videos"])
    cached = {k: v for k, v in batch.items() if k not in ("pixel_values", "pixel_values_videos")}
    cached["encoder_features"] = {
        "image": {"features": image.features, "window_mask": image.window_mask},
        "video": {"features": video.features, "window_mask": video.window_mask},
    }
    with torch.no_grad():
        torch.testing.assert_close(model(**cached).logits, model(**batch).logits, atol=0, rtol=0)
    settings = dict(num_beams=2, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert torch.equal(model.generate(**cached, **settings), model.generate(**batch, **settings))


def test_media_and_encoder_features_for_one_modality_are_refused():
    model, processor = tiny_model_and_processor()
    batch = dict(processor(images=[torch.rand(3, 32, 32)], text="<image> what"))
    with torch.no_grad():
        encoded = model.model.encode_media("image", batch["pixel_values"])
    features = {"image": {"features": encoded.features, "window_mask": encoded.window_mask}}
    with pytest.raises(ValueError, match="both as `pixel_values` and as `encoder_features`"):
        model(**batch, encoder_features=features)
    with pytest.raises(ValueError, match=r"`encoder_features\['image'\]\['features'\]` must be 32 wide"):
        model(**{k: v for k, v in batch.items() if k != "pixel_values"},
              encoder_features={"image": {"features": encoded.features[..., :8], "window_mask": encoded.window_mask}})  # fmt: skip


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_precision_cache_keeps_its_dtype_and_trains(workspace, tmp_path, dtype):
    shutil.copytree(workspace / "data" / "media" / "point_cloud", tmp_path / "media" / "point_cloud")
    manifest = tmp_path / "point_clouds.jsonl"
    manifest.write_text((workspace / "data" / "point_clouds.jsonl").read_text())
    model, processor = tiny_model_and_processor()
    build_feature_cache(manifest, model, processor, ["point_cloud"], dtype=dtype)
    cache = FeatureCache(manifest, model, processor, "point_cloud", dtype)
    path = next(iter(cache.index))
    item = cache.item(path)
    assert item.dtype == getattr(torch, dtype)
    with torch.no_grad():
        full = model.model.encode_media(
            "point_cloud", processor.prepare_media("point_cloud", [path])["point_clouds"]
        )
    torch.testing.assert_close(item[0].float(), full.features[0], atol=0.05, rtol=0.02)  # one window
    with pytest.raises(ValueError, match="stale: dtype changed"):
        FeatureCache(manifest, model, processor, "point_cloud", "float32")
    config = dict(stage=2, modalities=["point_cloud"], datasets=[str(manifest)], steps=2, cache_dtype=dtype)
    trainer = run(workspace, f"half-{dtype}", ["point_cloud"], **config)
    assert all(torch.isfinite(torch.tensor(loss)) for loss in losses(trainer))
