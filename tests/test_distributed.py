"""Loss scaling across micro-batches and processes: gradient accumulation with CIF's quantity loss,
and two-process `torchrun` training (gloo on CPU) of the tiny stage-2 and stage-3 configs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_trainers import training_args, write_image_manifest, write_video_manifest

from xllm import XLLMForConditionalGeneration
from xllm.manifests import load_manifest
from xllm.testing import tiny_model_and_processor
from xllm.trainers.checkpointing import last_complete_checkpoint, load_trainable_weights
from xllm.trainers.data import XLLMDataCollator
from xllm.trainers.stage2_alignment import AlignmentTrainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TONES = {"red": 300, "green": 600, "blue": 900, "yellow": 1200}


def write_spoken_answers_manifest(folder: Path) -> Path:
    """Utterances of two 0.1 s tones ("words"), with the words as answer and transcript. They are equally
    long: a padded batch gives the speech encoder slightly different frames than single utterances."""
    from scipy.io import wavfile

    (folder / "media").mkdir(parents=True, exist_ok=True)
    time = np.arange(1600) / 16000
    rows = []
    for index, words in enumerate(
        (["red", "green"], ["blue", "red"], ["yellow", "blue"], ["green", "green"])
    ):
        waveform = np.concatenate([0.3 * np.sin(2 * np.pi * TONES[word] * time) for word in words])
        wavfile.write(folder / "media" / f"{index}.wav", 16000, waveform.astype(np.float32))
        rows.append({"speech": f"media/{index}.wav", "prompt": "repeat", "response": " ".join(words)})
    path = folder / "speech.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows * 2))
    return path


def test_speech_gradient_accumulation_one_by_four_equals_four_by_one_with_the_quantity_loss(tmp_path):
    manifest = write_spoken_answers_manifest(tmp_path)
    weights, first_terms = [], []
    for batch_size, accumulation in ((4, 1), (1, 4)):
        model, processor = tiny_model_and_processor()
        trainer = AlignmentTrainer(
            model,
            args=training_args(
                tmp_path / f"{batch_size}x{accumulation}",
                max_steps=2,
                per_device_train_batch_size=batch_size,
                gradient_accumulation_steps=accumulation,
                learning_rate=1e-3,
            ),
            modalities=("speech",),
            train_dataset=load_manifest(manifest),
            data_collator=XLLMDataCollator(processor, speech_transcript_column="response"),
        )
        encoder_buffers = {name: b.clone() for name, b in model.model.encoders["speech"].named_buffers()}
        trainer.train()
        for name, buffer in model.model.encoders["speech"].named_buffers():
            assert torch.equal(buffer, encoder_buffers[name])  # BatchNorm statistics stay frozen too
        weights.append(trainer.model.model.interfaces["speech"].state_dict())
        first_terms.append(trainer.state.log_history[0])
    assert first_terms[0]["loss_quantity"] > 0.1  # the quantity loss is really there
    for name in ("loss", "loss_lm", "loss_quantity"):
        assert first_terms[1][name] == pytest.approx(first_terms[0][name], abs=1e-5)
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, atol=1e-5, rtol=1e-5)


# Run by every process that `torchrun` starts: records which media each process batched, then trains
# stage 2 and, from its export, stage 3 through `xllm train`'s `run_training`.
TWO_PROCESS_SCRIPT = """
import json, os, sys
from xllm.trainers import data
from xllm.trainers.training_run import run_training

seen = set()
collate = data.XLLMDataCollator.__call__

def recording_collate(self, examples):
    batch = collate(self, examples)
    seen.update(name for name in ("pixel_values", "pixel_values_videos") if name in batch)
    return batch

data.XLLMDataCollator.__call__ = recording_collate
stage2 = run_training(sys.argv[1])
stage3 = run_training(sys.argv[2])
report = {"world_size": stage3.args.world_size, "media": sorted(seen)}
with open(os.path.join(sys.argv[3], f"rank{stage3.args.process_index}.json"), "w") as file:
    json.dump(report, file)
"""


def two_process_config(name: str, folder: Path, **overrides) -> Path:
    """configs/NAME on local data under `folder`: rank 0 trains on images only, rank 1 on videos only."""
    values = yaml.safe_load((CONFIGS / name).read_text())
    values.update(
        datasets=[str(write_image_manifest(folder)), str(write_video_manifest(folder))],
        dataset_ratios=None,
        rank_dataset_ratios=[[1, 0], [0, 1]],
        output_dir=str(folder / Path(values["output_dir"]).name),
        max_steps=2,
        disable_tqdm=True,
        **overrides,
    )
    path = folder / name
    path.write_text(yaml.safe_dump(values))
    return path


def test_two_torchrun_processes_train_stages_two_and_three_on_different_modality_mixes(tmp_path):
    stage2 = two_process_config("tiny_stage2.yaml", tmp_path, save_steps=2)
    stage3 = two_process_config(
        "tiny_stage3.yaml", tmp_path, tiny_model=False, model_name_or_path=str(tmp_path / "tiny-stage2")
    )
    script = tmp_path / "two_process_training.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(stage2),
            str(stage3),
            str(tmp_path),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [report["world_size"] for report in reports] == [2, 2]
    assert [report["media"] for report in reports] == [["pixel_values"], ["pixel_values_videos"]]

    checkpoint = last_complete_checkpoint(str(tmp_path / "tiny-stage2"))
    assert checkpoint == str(tmp_path / "tiny-stage2" / "checkpoint-2")
    model, _ = tiny_model_and_processor()
    model.requires_grad_(False)
    model.unfreeze("interfaces.image", "interfaces.video")  # what stage 2 trained
    load_trainable_weights(model, checkpoint)
    final = XLLMForConditionalGeneration.from_pretrained(tmp_path / "tiny-stage3")
    stage2_export = XLLMForConditionalGeneration.from_pretrained(tmp_path / "tiny-stage2")
    torch.testing.assert_close(
        stage2_export.model.interfaces["video"].state_dict(), model.model.interfaces["video"].state_dict()
    )
    assert not torch.equal(
        final.model.interfaces["image"].query_tokens, stage2_export.model.interfaces["image"].query_tokens
    )
