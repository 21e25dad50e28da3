"""Loading never runs code from a checkpoint or a manifest: weights come from safetensors (pickles only
through `torch.load(weights_only=True)`), remote code needs an explicit `trust_remote_code=True`, and
manifests cannot reach files outside their folder unless allowed."""

import ast
import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText

import xllm
from xllm.manifests import load_manifest
from xllm.modeling_xllm import XLLMConfig
from xllm.modeling_xllm.convert_beats import convert_beats_checkpoint
from xllm.modeling_xllm.convert_lavis import convert_lavis_checkpoint
from xllm.modeling_xllm.convert_pointbert import convert_pointbert_checkpoint
from xllm.testing import tiny_model_and_processor, tiny_processor

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class WritesAFileWhenUnpickled:
    """A pickle payload with a visible side effect: unpickling it creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def image_model():
    model, _ = tiny_model_and_processor(speech_model_type=None, audio_model_type=None, point_clouds=False)
    return model


@pytest.fixture(scope="module")
def saved_dir(image_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("saved")
    image_model.save_pretrained(directory)
    tiny_processor().save_pretrained(directory)
    return directory


def copy_of(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / "checkpoint"
    shutil.copytree(directory, target)
    return target


def save_malicious_pickle(model, path: Path, marker: Path) -> None:
    torch.save({**model.state_dict(), "payload": WritesAFileWhenUnpickled(marker)}, path)


# Weights.


def test_the_payload_runs_when_unpickled_without_weights_only(tmp_path):
    """The payload the tests below plant is real: an unrestricted `torch.load` runs it."""
    path, marker = tmp_path / "payload.pt", tmp_path / "code_ran"
    torch.save({"payload": WritesAFileWhenUnpickled(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_saved_folder_holds_safetensors_weights_and_no_pickle(saved_dir):
    files = [path.name for path in saved_dir.iterdir()]
    assert "model.safetensors" in files
    assert not [name for name in files if name.endswith(PICKLE_SUFFIXES)]


def test_pickle_next_to_safetensors_weights_is_never_unpickled(image_model, saved_dir, tmp_path):
    checkpoint, marker = copy_of(saved_dir, tmp_path), tmp_path / "code_ran"
    save_malicious_pickle(image_model, checkpoint / "pytorch_model.bin", marker)
    loaded = AutoModelForImageTextToText.from_pretrained(checkpoint)
    assert not marker.exists()
    torch.testing.assert_close(loaded.state_dict(), image_model.state_dict(), atol=0, rtol=0)


def test_folder_with_only_pickled_weights_is_refused_by_default(image_model, saved_dir, tmp_path):
    checkpoint = copy_of(saved_dir, tmp_path)
    (checkpoint / "model.safetensors").unlink()
    torch.save(image_model.state_dict(), checkpoint / "pytorch_model.bin")
    with pytest.raises(OSError, match="no file named model.safetensors"):
        AutoModelForImageTextToText.from_pretrained(checkpoint)


def test_opting_into_pickled_weights_still_refuses_pickles_that_run_code(image_model, saved_dir, tmp_path):
    """With `use_safetensors=False` transformers reads `.bin` with `torch.load(weights_only=True)`."""
    checkpoint, marker = copy_of(saved_dir, tmp_path), tmp_path / "code_ran"
    (checkpoint / "model.safetensors").unlink()
    save_malicious_pickle(image_model, checkpoint / "pytorch_model.bin", marker)
    with pytest.raises(Exception, match="Weights only load failed"):
        AutoModelForImageTextToText.from_pretrained(checkpoint, use_safetensors=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "convert",
    [
        convert_beats_checkpoint,
        convert_pointbert_checkpoint,
        lambda path: convert_lavis_checkpoint(path, "image"),
    ],
    ids=["beats", "pointbert", "lavis"],
)
def test_converters_refuse_foreign_checkpoints_whose_pickle_runs_code(convert, tmp_path):
    path, marker = tmp_path / "foreign.pth", tmp_path / "code_ran"
    torch.save({"model": {}, "state_dict": {}, "payload": WritesAFileWhenUnpickled(marker)}, path)
    with pytest.raises(ValueError, match="could run code"):
        convert(path)
    assert not marker.exists()


# Remote code.


def write_remote_code_config(directory: Path, model_type: str, marker: Path) -> None:
    """A config whose `auto_map` points at a module that creates `marker` when imported."""
    (directory / "configuration_payload.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import PreTrainedConfig\n\n\n"
        "class PayloadConfig(PreTrainedConfig):\n"
        f"    model_type = {model_type!r}\n"
    )
    config = (
        json.loads((directory / "config.json").read_text()) if (directory / "config.json").exists() else {}
    )
    config.update(model_type=model_type, auto_map={"AutoConfig": "configuration_payload.PayloadConfig"})
    (directory / "config.json").write_text(json.dumps(config))


def test_auto_map_of_a_known_model_type_is_ignored_without_trust_remote_code(saved_dir, tmp_path):
    checkpoint, marker = copy_of(saved_dir, tmp_path), tmp_path / "code_ran"
    write_remote_code_config(checkpoint, "xllm", marker)
    assert isinstance(AutoConfig.from_pretrained(checkpoint), XLLMConfig)
    AutoModelForImageTextToText.from_pretrained(checkpoint)
    assert not marker.exists()


def test_auto_map_of_an_unknown_model_type_needs_trust_remote_code(tmp_path):
    marker = tmp_path / "code_ran"
    write_remote_code_config(tmp_path, "payload_model", marker)
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoConfig.from_pretrained(tmp_path)
    assert not marker.exists()


def test_the_package_never_enables_trust_remote_code_itself():
    """No call in the package passes `trust_remote_code=True` (or any value but a variable the caller sets)."""
    offenders = []
    for path in Path(xllm.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            for keyword in getattr(node, "keywords", []) if isinstance(node, ast.Call) else []:
                if keyword.arg == "trust_remote_code" and not (
                    isinstance(keyword.value, ast.Name)
                    or (isinstance(keyword.value, ast.Constant) and keyword.value.value is False)
                ):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


# Manifests.


def write_manifest(folder: Path, image_path: str) -> Path:
    manifest = folder / "data.jsonl"
    manifest.write_text(
        json.dumps({"images": image_path, "prompt": "describe it", "response": "a red circle"}) + "\n"
    )
    return manifest


@pytest.mark.parametrize("escape", ["../secret.png", "/etc/passwd"])
def test_evaluation_manifest_cannot_name_files_outside_its_folder(tmp_path, escape):
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"outside the manifest folder .*allow_outside_root=True"):
        load_manifest(write_manifest(folder, escape))


def test_evaluation_manifest_cannot_escape_through_a_symlink(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (tmp_path / "secret.png").write_bytes(b"secret")
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(ValueError, match="outside the manifest folder"):
        load_manifest(write_manifest(folder, "link.png"))


def test_evaluation_manifest_may_name_outside_files_when_allowed(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    [row] = load_manifest(write_manifest(folder, "../shared/a.png"), allow_outside_root=True, decode=False)
    assert row["images"]["path"] == str((tmp_path / "shared" / "a.png").resolve())
