"""Sharing X-LLM models: remote code for `trust_remote_code=True`, weights, processor and model card.

A folder saved with `save_for_hub` loads where this package is not installed:

    AutoModelForMultimodalLM.from_pretrained(folder, trust_remote_code=True)
    AutoProcessor.from_pretrained(folder, trust_remote_code=True)

because `register_for_auto_class` makes `save_pretrained` write `auto_map` into the configs and
copy the files that define the classes, with the sibling files they import, next to the weights.
The card (`README.md`, see `model_card.py`) carries the evaluation reports given here.
"""

import tempfile
from pathlib import Path

from huggingface_hub import HfApi
from transformers import PreTrainedModel, ProcessorMixin

from xllm.model_card import write_model_card
from xllm.modeling_xllm import XLLMConfig, XLLMForConditionalGeneration, XLLMModel
from xllm.processing import XLLMProcessor, XLLMVideoProcessor


def class_path(cls: type) -> str:
    """`module.Class` as `auto_map` names it: the file name inside the saved folder, then the class."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


def register_for_auto_classes(config: XLLMConfig) -> None:
    """Make `save_pretrained` write remote code and `auto_map` for config, model and processors.

    `register_for_auto_class` records one Auto class per class; the model is also mapped to
    `AutoModel` and `AutoModelForImageTextToText` (used by `pipeline("image-text-to-text")`)
    through the config's `auto_map`. The registration is per class, so later `save_pretrained` calls
    in this process also write remote code.
    """
    XLLMConfig.register_for_auto_class()
    XLLMForConditionalGeneration.register_for_auto_class("AutoModelForMultimodalLM")
    XLLMProcessor.register_for_auto_class()
    XLLMVideoProcessor.register_for_auto_class("AutoVideoProcessor")
    config.auto_map = {
        **(getattr(config, "auto_map", None) or {}),
        "AutoModel": class_path(XLLMModel),
        "AutoModelForImageTextToText": class_path(XLLMForConditionalGeneration),
    }


def save_for_hub(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    save_directory: str | Path,
    eval_report: dict | list[dict] | str | Path | None = None,
    **card_fields,
) -> Path:
    """Save weights, processor, remote code and the model card (README.md) into one folder."""
    save_directory = Path(save_directory)
    register_for_auto_classes(model.config)
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
    """Upload what `save_for_hub` writes to a Hub model repository; returns the commit URL."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        save_for_hub(model, processor, folder, eval_report, model_name=repo_id, **card_fields)
        return str(
            api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload X-LLM model")
        )


__all__ = ["push_to_hub", "register_for_auto_classes", "save_for_hub"]
