"""Sharing the transformers way: after `import xllm` (which calls `register_for_auto_class`), a plain
`save_pretrained` and `push_to_hub` carry the code and `auto_map`, and `model.push_to_hub` keeps our card.

The Hub is never reached: its repository and commit calls are intercepted (`huggingface_hub.HfApi.create_repo`
and `create_commit`, which transformers' `push_to_hub` calls), and the committed files are copied out of
the commit operations to check what would have been uploaded.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from huggingface_hub.errors import EntryNotFoundError
from test_remote_code import load_without_xllm

from xllm.testing import tiny_model_and_processor

CODE_FILES = {"modeling_xllm.py", "modeling_qformer.py", "configuration_xllm.py", "processing_xllm.py"}


@pytest.fixture(scope="module")
def model_and_processor():
    return tiny_model_and_processor()


def logits_without_xllm(folder: Path, scratch: Path) -> torch.Tensor:
    """Load `folder` with `trust_remote_code=True` where `xllm` cannot be imported; its logits for one image."""
    report, logits = load_without_xllm(folder, scratch)
    assert report["model_module"].startswith("transformers_modules.") and not report["xllm_imported"]
    return logits


def expected_logits(model, processor) -> torch.Tensor:
    inputs = processor(images=[np.full((32, 32, 3), 200, dtype=np.uint8)], text="<image> what colour is it ?")
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A stand-in for the Hub: a new, empty repository per push; each commit's files land in
    `uploaded / <repo_id>`."""
    uploaded = tmp_path / "uploaded"

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, **kwargs):
        for operation in operations:
            target = uploaded / repo_id / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(operation.path_or_fileobj, target)
        url = f"https://huggingface.co/{repo_id}/commit/0"
        return CommitInfo(
            commit_url=url, commit_message=kwargs.get("commit_message") or "", commit_description="", oid="0"
        )

    load_card = ModelCard.load

    def load_uploaded_card(cls, repo_id_or_path, **kwargs):
        """A local card as before; a repository's card from what was uploaded to it (none at first)."""
        if Path(repo_id_or_path).is_file():
            return load_card(repo_id_or_path, **kwargs)
        card = uploaded / repo_id_or_path / "README.md"
        if not card.is_file():
            raise EntryNotFoundError(f"{repo_id_or_path} has no README.md")
        return load_card(card)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(ModelCard, "load", classmethod(load_uploaded_card))
    return uploaded


def test_plain_save_pretrained_folder_loads_without_xllm_with_equal_logits(model_and_processor, tmp_path):
    model, processor = model_and_processor
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_xllm.XLLMConfig",
        "AutoModel": "modeling_xllm.XLLMModel",
        "AutoModelForImageTextToText": "modeling_xllm.XLLMForConditionalGeneration",
        "AutoModelForMultimodalLM": "modeling_xllm.XLLMForConditionalGeneration",
    }
    processor_config = json.loads((folder / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_xllm.XLLMProcessor"
    assert CODE_FILES <= {path.name for path in folder.iterdir()}
    torch.testing.assert_close(
        logits_without_xllm(folder, tmp_path), expected_logits(model, processor), atol=1e-5, rtol=0
    )


def test_model_and_processor_push_to_hub_upload_code_auto_map_and_our_card(
    model_and_processor, hub, tmp_path
):
    model, processor = model_and_processor
    model.push_to_hub("someone/tiny-xllm")
    processor.push_to_hub("someone/tiny-xllm")
    folder = hub / "someone/tiny-xllm"
    assert CODE_FILES <= {path.name for path in folder.iterdir()}
    assert json.loads((folder / "config.json").read_text())["auto_map"]["AutoModelForMultimodalLM"] == (
        "modeling_xllm.XLLMForConditionalGeneration"
    )
    assert "AutoProcessor" in json.loads((folder / "processor_config.json").read_text())["auto_map"]
    # The model's push wrote our card; the processor's push found it in the repository and kept it.
    card = ModelCard((folder / "README.md").read_text())
    assert "xllm" in card.data.tags and "custom_code" in card.data.tags
    assert card.data.model_name == "someone/tiny-xllm"
    assert "automatically generated" not in card.text
    assert "trust_remote_code=True" in card.text
    torch.testing.assert_close(
        logits_without_xllm(folder, tmp_path), expected_logits(model, processor), atol=1e-5, rtol=0
    )


def test_push_to_hub_keeps_the_card_a_repository_already_has(model_and_processor, hub):
    model, _ = model_and_processor
    (hub / "someone/with-card").mkdir(parents=True)
    (hub / "someone/with-card" / "README.md").write_text(
        "---\nlicense: mit\n---\n# My own words about this model\n"
    )
    model.push_to_hub("someone/with-card")
    card = (hub / "someone/with-card" / "README.md").read_text()
    assert "My own words" in card and "license: mit" in card
