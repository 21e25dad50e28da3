"""Stage 1 for every interface kind and modality: the BLIP-2 objectives for the Q-Formers of images,
videos (each frame with its video's caption), sounds (each window with its clip's caption) and point
clouds, and CIF speech recognition for the C-Former; from `xllm train` YAML files on exported data."""

import pytest
import torch
import yaml

from xllm.manifests import load_manifest
from xllm.processing.processor_modalities import MODALITIES
from xllm.testing import tiny_model_and_processor
from xllm.trainers.stage1_interface_pretraining import (
    build_pretraining_model,
    load_interface_checkpoint,
    pretraining_collator,
)
from xllm.trainers.training_run import run_training

QFORMER_MODALITIES = ("image", "video", "audio", "point_cloud")


def stage_one_config(tmp_path, world_data, modality: str, **overrides):
    values = {
        "stage": 1,
        "modality": modality,
        "tiny_model": True,
        "datasets": [str(world_data / f"{MODALITIES[modality].keyword}.jsonl")],
        "output_dir": str(tmp_path / f"stage1-{modality}"),
        "per_device_train_batch_size": 4,
        "learning_rate": 3e-3,
        "max_steps": 2,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        **overrides,
    }
    path = tmp_path / f"stage1-{modality}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("modality", [*QFORMER_MODALITIES, "speech"])
def test_stage_one_trains_every_modality_from_its_yaml_and_the_interface_loads_into_stage_two(
    modality, tmp_path, world_data
):
    overrides = {"ctc_weight": 0.5} if modality == "speech" else {}
    trainer = run_training(str(stage_one_config(tmp_path, world_data, modality, **overrides)))
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    terms = ("asr", "quantity", "ctc") if modality == "speech" else ("itc", "itg")
    assert all(f"loss_{term}" in logged[0] for term in terms)
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logged)
    assert not any(p.requires_grad for p in trainer.model.encoder.parameters())
    stage_two, _ = tiny_model_and_processor(seed=1)
    load_interface_checkpoint(stage_two, modality, str(tmp_path / f"stage1-{modality}"))
    for name, parameter in trainer.model.interface.named_parameters():
        torch.testing.assert_close(stage_two.model.interfaces[modality].get_parameter(name), parameter)


@pytest.mark.parametrize("modality", QFORMER_MODALITIES)
def test_every_frame_or_window_is_paired_with_its_items_caption(modality, world_data):
    model, processor = tiny_model_and_processor()
    heads = build_pretraining_model(model, modality)
    examples = list(load_manifest(world_data / f"{MODALITIES[modality].keyword}.jsonl"))
    batch = pretraining_collator(model, processor, modality)(examples)
    text_rows = []

    def record(module, args, kwargs):
        if kwargs.get("input_ids") is not None:
            text_rows.append(kwargs["input_ids"].shape[0])

    handle = heads.interface.qformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.no_grad():
            heads(**batch)
    finally:
        handle.remove()
    encoder_inputs = {
        "image": len(examples),
        "point_cloud": len(examples),
        "video": batch.get("pixel_values_videos", torch.zeros(1, 1)).shape[:2].numel(),
        "audio": int(batch["audio_window_mask"].sum()) if "audio_window_mask" in batch else 0,
    }[modality]
    assert text_rows[0] == encoder_inputs  # the contrastive pass: one caption per encoder input
    if modality in ("video", "audio"):
        assert encoder_inputs > len(examples)
