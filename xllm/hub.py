"""Sharing X-LLM models: remote code for `trust_remote_code=True`, weights, processor and model card.

`import xllm` registers the config, model and processor classes with `register_for_auto_class`
(`auto_registration.py`), transformers' convention for models outside transformers: so a plain
`model.save_pretrained(folder)` / `processor.save_pretrained(folder)` writes `auto_map` into the configs
and copies the files that define the classes, with the sibling files they import, next to the weights,
and `model.push_to_hub(repo)` / `processor.push_to_hub(repo)` upload that. The folder then loads where
this package is not installed:

    AutoModelForMultimodalLM.from_pretrained(folder, trust_remote_code=True)
    AutoProcessor.from_pretrained(folder, trust_remote_code=True)

Every `save_pretrained` writes our model card (`README.md`, see `model_card.py`) where the folder has none,
and `model.push_to_hub` keeps it. `save_for_hub` / `push_to_hub` here do both saves in one call and put the
given evaluation reports in the card.
"""

import tempfile
from pathlib import Path

from huggingface_hub import HfApi
from transformers import PreTrainedModel, ProcessorMixin

from xllm.model_card import write_model_card


def save_for_hub(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    save_directory: str | Path,
    eval_report: dict | list[dict] | str | Path | None = None,
    **card_fields,
) -> Path:
    """Save weights, processor, remote code and the model card (README.md, with the evaluation reports)
    into one folder."""
    save_directory = Path(save_directory)
    model.save_pretrained(save_directory)
    processor.save_pretrained(save_directory)
    write_model_card(save_directory, model.config, eval_report, **card_fields)
    return save_directory


def push_to_hub(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    repo_id: str,
    eval_report: dict | list[dict] | str | Path | None = None,
    private: bool | None = None,
    token: str | None = None,
    **card_fields,
) -> str:
    """Upload what `save_for_hub` writes to a Hub model repository in one commit; returns the commit URL."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        save_for_hub(model, processor, folder, eval_report, model_name=repo_id, **card_fields)
        return str(
            api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload X-LLM model")
        )


__all__ = ["push_to_hub", "save_for_hub"]
