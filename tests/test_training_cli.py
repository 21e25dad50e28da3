"""`xllm train CONFIG.yaml`: the tiny configs run stage 1 -> 2 -> 3 on local data; every config parses."""

import json
from pathlib import Path

import pytest
import yaml

from xllm import XLLMForConditionalGeneration
from xllm.cli import main
from xllm.trainers.training_run import LOSS_CURVES_NAME, parse_config, run_training

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny_config_copy(name: str, tmp_path: Path, data: Path, **overrides) -> Path:
    """configs/NAME reading its manifests from `data` (as `xllm world export` writes them), writing under
    `tmp_path`."""
    values = yaml.safe_load((CONFIGS / name).read_text())
    values["datasets"] = [str(data / Path(path).name) for path in values["datasets"]]
    values["output_dir"] = str(tmp_path / Path(values["output_dir"]).name)
    values.update(overrides, disable_tqdm=True)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_example_config_parses(config):
    model_args, data_args, stage_args, training_args = parse_config(CONFIGS / config, {"bf16": False})
    assert stage_args.stage in (1, 2, 3) and data_args.datasets and training_args.output_dir
    if data_args.dataset_ratios is not None:
        assert len(data_args.dataset_ratios) == len(data_args.datasets)


def test_tiny_stages_one_two_three_chain_through_the_cli(tmp_path, world_data):
    stage1 = tiny_config_copy("tiny_stage1.yaml", tmp_path, world_data)
    assert main(["train", str(stage1)]) == 0
    interface = tmp_path / "tiny-stage1"
    assert (interface / LOSS_CURVES_NAME).is_file()

    stage2 = tiny_config_copy(
        "tiny_stage2.yaml", tmp_path, world_data, interface_checkpoints={"image": str(interface)}
    )
    assert main(["train", str(stage2)]) == 0
    exported = tmp_path / "tiny-stage2"
    checkpoint = exported / "checkpoint-2"
    assert sorted(p.name for p in checkpoint.glob("*.safetensors")) == ["trainable_model.safetensors"]
    assert (exported / LOSS_CURVES_NAME).stat().st_size > 1000

    resumed = tiny_config_copy(
        "tiny_stage2.yaml",
        tmp_path,
        world_data,
        output_dir=str(tmp_path / "resumed"),
        interface_checkpoints=None,
    )
    log = run_training(str(resumed), resume_from_checkpoint=str(checkpoint)).state.log_history
    uninterrupted = json.loads((exported / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    assert [e["loss"] for e in log if "loss" in e] == pytest.approx(
        [e["loss"] for e in uninterrupted if "loss" in e], abs=1e-6
    )

    stage3 = tiny_config_copy(
        "tiny_stage3.yaml", tmp_path, world_data, tiny_model=False, model_name_or_path=str(exported)
    )
    assert main(["train", str(stage3)]) == 0
    final = tmp_path / "tiny-stage3"
    assert (final / "lora_adapter" / "adapter_config.json").is_file()
    XLLMForConditionalGeneration.from_pretrained(final)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"`datasets\[1\]` names the manifest .*missing.jsonl.*does not exist"),
        ("{not json", r"`datasets\[1\]`: the manifest .*cannot be read"),
    ],
)
def test_a_missing_or_unreadable_manifest_names_the_file_and_the_config_key(
    tmp_path, world_data, content, message
):
    manifest = tmp_path / "missing.jsonl"
    if content is not None:
        manifest.write_text(content)
    config = tiny_config_copy("tiny_stage2.yaml", tmp_path, world_data)
    values = yaml.safe_load(config.read_text())
    values["datasets"][1] = str(manifest)
    config.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match=message):
        run_training(str(config))
