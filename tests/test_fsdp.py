"""FSDP2 (`fully_shard`) through `accelerate launch` on 2 CPU processes (gloo): stage 2 trains with the
frozen parts sharded too, checkpoints gather the sharded trainable weights into the one-process format, and
`--resume_from_checkpoint auto` continues a run with the losses an uninterrupted run has."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from test_trainers import write_image_manifest

from xllm import XLLMForConditionalGeneration
from xllm.testing import tiny_model_and_processor
from xllm.trainers.checkpointing import TRAINABLE_WEIGHTS_NAME, load_trainable_weights

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIG = ROOT / "configs" / "accelerate" / "fsdp_cpu_2_processes.yaml"

# Run by both processes: 3 stage-2 steps with a checkpoint after each; then, as after a crash after step 1,
# the later checkpoints go and the same command resumes (`auto`: from checkpoint-1) to step 3.
FSDP_SCRIPT = """
import json, os, shutil, sys
import torch.distributed as dist
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType
from torch.distributed.tensor import DTensor
from xllm.trainers.training_run import run_training

# accelerate 1.15 takes the FSDP plugin (from `accelerate launch`'s config) on accelerators only; torch's FSDP2
# runs on CPU processes with gloo, so here the CPU state takes it too (test only: real runs have GPUs).
accelerator_state_init = AcceleratorState.__init__

def fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, fsdp_plugin

AcceleratorState.__init__ = fsdp_on_cpu

config, stage3_config, report_dir = sys.argv[1], sys.argv[2], sys.argv[3]
first = run_training(config, resume_from_checkpoint="auto")
model = first.model
sharded = {
    "interfaces": all(isinstance(p, DTensor) for n, p in model.named_parameters() if ".interfaces." in n),
    "language_model": all(isinstance(p, DTensor) for n, p in model.named_parameters() if ".language_model." in n),
    "encoders": all(isinstance(p, DTensor) for n, p in model.named_parameters() if ".encoders." in n),
}
output_dir = first.args.output_dir
if first.is_world_process_zero():
    shutil.copytree(os.path.join(output_dir, "checkpoint-3"), os.path.join(report_dir, "uninterrupted-checkpoint-3"))
    for step in (2, 3):
        shutil.rmtree(os.path.join(output_dir, f"checkpoint-{step}"))
dist.barrier()
with open(os.path.join(output_dir, "checkpoint-1", "trainer_state.json")) as file:
    restored = len(json.load(file)["log_history"])  # the resumed run's history starts with these entries
resumed = run_training(config, resume_from_checkpoint="auto")
new_entries = resumed.state.log_history[restored:]
report = {
    "world_size": first.args.world_size,
    "fsdp": first.is_fsdp_enabled,
    "sharded": sharded,
    "first": [e["loss"] for e in first.state.log_history if "loss" in e],
    "resumed": [e["loss"] for e in new_entries if "loss" in e],
    "resumed_steps": [e["step"] for e in new_entries if "loss" in e],
}
stage3 = run_training(stage3_config)  # LoRA on the LLM, from the stage-2 export
report["stage3_lora_trained"] = any("lora_" in n for n, p in stage3.model.named_parameters() if p.requires_grad)
with open(os.path.join(report_dir, f"rank{first.args.process_index}.json"), "w") as file:
    json.dump(report, file)
"""


def test_fsdp_on_two_cpu_processes_resumes_with_the_losses_of_an_uninterrupted_run(tmp_path):
    values = yaml.safe_load((ROOT / "configs" / "tiny_stage2.yaml").read_text())
    values.update(
        modalities=["image"],
        datasets=[str(write_image_manifest(tmp_path, repeats=4))],
        dataset_ratios=None,
        output_dir=str(tmp_path / "run"),
        max_steps=3,
        save_steps=1,
        disable_tqdm=True,
    )
    config = tmp_path / "stage2.yaml"
    config.write_text(yaml.safe_dump(values))
    stage3 = dict(values, stage=3, tiny_model=False, model_name_or_path=str(tmp_path / "run"), lora_rank=4,
                  output_dir=str(tmp_path / "stage3"), max_steps=2, save_strategy="no")  # fmt: skip
    stage3.pop("modalities")
    stage3_config = tmp_path / "stage3.yaml"
    stage3_config.write_text(yaml.safe_dump(stage3))
    script = tmp_path / "fsdp_training.py"
    script.write_text(FSDP_SCRIPT)
    accelerate = Path(sys.executable).parent / "accelerate"
    result = subprocess.run(
        [str(accelerate), "launch", "--config_file", str(ACCELERATE_CONFIG), "--main_process_port", "0"]
        + [str(script), str(config), str(stage3_config), str(tmp_path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for report in reports:
        assert report["world_size"] == 2 and report["fsdp"]
        assert report["sharded"] == {"interfaces": True, "language_model": True, "encoders": True}
        assert len(report["first"]) == 3 and report["resumed_steps"] == [2, 3]
        for resumed, uninterrupted in zip(report["resumed"], report["first"][1:], strict=True):
            assert abs(resumed - uninterrupted) <= 1e-6

    # The gathered checkpoint is the one-process format: it loads into an unsharded model, and the resumed
    # run's last checkpoint equals the uninterrupted run's.
    checkpoint = tmp_path / "run" / "checkpoint-3"
    model, _ = tiny_model_and_processor()
    model.requires_grad_(False)
    model.unfreeze("interfaces.image")
    load_trainable_weights(model, str(checkpoint))
    again, _ = tiny_model_and_processor()
    again.requires_grad_(False)
    again.unfreeze("interfaces.image")
    load_trainable_weights(again, str(tmp_path / "uninterrupted-checkpoint-3"))
    torch.testing.assert_close(again.state_dict(), model.state_dict(), atol=1e-6, rtol=0)
    start, _ = tiny_model_and_processor()
    assert not torch.equal(
        model.model.interfaces["image"].query_tokens, start.model.interfaces["image"].query_tokens
    )
    # The export at the end gathers the whole model: its image interface is the checkpoint's.
    exported = XLLMForConditionalGeneration.from_pretrained(tmp_path / "run")
    torch.testing.assert_close(
        exported.model.interfaces["image"].state_dict(), model.model.interfaces["image"].state_dict()
    )
    torch.testing.assert_close(
        exported.model.language_model.state_dict(), start.model.language_model.state_dict()
    )
    assert (checkpoint / TRAINABLE_WEIGHTS_NAME).is_file() and not list(
        checkpoint.glob("pytorch_model_fsdp*")
    )

    # Stage 3 with LoRA under FSDP: the adapters are saved, and merged into the exported LLM.
    assert all(report["stage3_lora_trained"] for report in reports)
    assert (tmp_path / "stage3" / "lora_adapter" / "adapter_config.json").is_file()
    merged = XLLMForConditionalGeneration.from_pretrained(tmp_path / "stage3")
    query = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[query], exported.state_dict()[query])
    mlp = "model.language_model.layers.0.mlp.up_proj.weight"  # no LoRA there
    assert torch.equal(merged.state_dict()[mlp], exported.state_dict()[mlp])
    shutil.rmtree(tmp_path / "run")


def test_shipped_fsdp_configs_name_only_layer_classes_their_models_have():
    from xllm.modeling_xllm.configuration_presets import PRESETS

    for config_name, preset in (
        ("fsdp_x_instructblip_7b", "x-instructblip-7b"),
        ("fsdp_x_instructblip_13b", "x-instructblip-13b"),
        ("fsdp_x_llm", "x-llm"),
    ):
        values = yaml.safe_load((ROOT / "configs" / "accelerate" / f"{config_name}.yaml").read_text())
        assert values["distributed_type"] == "FSDP" and values["fsdp_config"]["fsdp_version"] == 2
        with torch.device("meta"):
            model = XLLMForConditionalGeneration(PRESETS[preset]())
        present = {type(module).__name__ for module in model.modules()}
        wrapped = values["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"].split(",")
        assert set(model._no_split_modules) <= set(wrapped) <= present, config_name
