"""Sharing X-LLM models: remote code for `trust_remote_code=True`, and the model card.

A folder saved with `save_for_hub` loads where this package is not installed:

    AutoModelForMultimodalLM.from_pretrained(folder, trust_remote_code=True)
    AutoProcessor.from_pretrained(folder, trust_remote_code=True)

because `register_for_auto_class` makes `save_pretrained` write `auto_map` into the configs and
copy the files that define the classes, with the sibling files they import, next to the weights.
The card (`README.md`) is rendered from the package's `model_card_template.md` (the repository's
`model_card.md` is a link to it, so the template ships in the wheel) through `huggingface_hub.ModelCard`,
with Hub metadata and, given evaluation reports, a model-index. `register_model_card_writer` makes
every `save_pretrained` of an X-LLM model write the card too.
"""

import json
import tempfile
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from transformers import PreTrainedModel, ProcessorMixin

from xllm.modeling_xllm import XLLMConfig, XLLMForConditionalGeneration, XLLMModel, XLLMPreTrainedModel
from xllm.processing import XLLMProcessor, XLLMVideoProcessor

MODEL_CARD_TEMPLATE = Path(__file__).resolve().parent / "model_card_template.md"

# Hub task id for each task of `xllm evaluate` (evaluation/runner.py).
EVALUATION_TASK_TYPES = {
    "captioning": "image-to-text",
    "vqa": "visual-question-answering",
    "asr": "automatic-speech-recognition",
    "classification": "zero-shot-classification",
    "discrn": "any-to-any",
}


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


def register_model_card_writer() -> None:
    """Make `save_pretrained` of every X-LLM model write its model card (README.md) when the folder has none.

    The model file cannot import this module (it also runs as remote code, where `xllm` is absent), so the
    writer is handed to the model class here, as `register_for_auto_class` hands classes to transformers.
    """
    XLLMPreTrainedModel.model_card_writer = staticmethod(write_model_card)


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


def read_eval_reports(eval_report: dict | list[dict] | str | Path | None) -> list[dict]:
    """Reports of `xllm evaluate` (`report.json`): a dict, a list of dicts or a JSON file of either."""
    if eval_report is None:
        return []
    if isinstance(eval_report, (str, Path)):
        eval_report = json.loads(Path(eval_report).read_text())
    reports = [eval_report] if isinstance(eval_report, dict) else list(eval_report)
    for report in reports:
        if not isinstance(report, dict) or not {"task", "metrics"} <= report.keys():
            raise ValueError(
                f"`eval_report` must hold reports with 'task' and 'metrics' keys (as `xllm evaluate` writes), got {report!r}."
            )
    return reports


def eval_results(reports: list[dict]) -> list[EvalResult]:
    """One model-index entry per (report, metric)."""
    results = []
    for report in reports:
        dataset = report.get("dataset") or Path(str(report.get("data", report["task"]))).stem
        for metric, value in report["metrics"].items():
            results.append(
                EvalResult(
                    task_type=EVALUATION_TASK_TYPES.get(report["task"], "any-to-any"),
                    task_name=report["task"],
                    dataset_type=dataset,
                    dataset_name=dataset,
                    metric_type=metric,
                    metric_name=metric,
                    metric_value=value,
                )
            )
    return results


def component_rows(config: XLLMConfig) -> list[dict]:
    """One row per interface for the card's architecture table."""
    rows = []
    for modality in config.modalities:
        interface = config.interface_config(modality)
        rows.append(
            {
                "modality": modality,
                "encoder": config.encoder_config(modality).model_type,
                "kind": interface.kind,
                "queries": interface.num_query_tokens,
                "layers": interface.num_hidden_layers,
                "instruction_aware": interface.instruction_aware,
            }
        )
    return rows


def write_model_card(
    save_directory: str | Path,
    config: XLLMConfig,
    eval_report: dict | list[dict] | str | Path | None = None,
    *,
    model_name: str | None = None,
    base_models: list[str] | None = None,
    datasets: list[str] | None = None,
    license: str | None = None,
) -> ModelCard:
    """Render the model card template for this config into `save_directory/README.md` and return the card.

    Metadata: library_name `transformers` (loaded with `trust_remote_code=True`), pipeline_tag
    `any-to-any`, tags naming the modalities, the given base models and datasets, the metrics of
    the evaluation reports and a model-index built from them.
    """
    if not MODEL_CARD_TEMPLATE.is_file():
        raise ValueError(f"The model card template is missing: expected {MODEL_CARD_TEMPLATE}.")
    reports = read_eval_reports(eval_report)
    results = eval_results(reports)
    model_name = model_name or Path(save_directory).name
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="any-to-any",
        tags=["xllm", "x-llm", "multimodal", "q-former", "custom_code", *config.modalities],
        base_model=base_models or None,
        datasets=datasets or None,
        metrics=sorted({result.metric_type for result in results}) or None,
        eval_results=results or None,
        license=license,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        model_name=model_name,
        text_model_type=config.text_config.model_type,
        text_hidden_size=config.text_config.hidden_size,
        interfaces=component_rows(config),
        reports=reports,
    )
    card.save(Path(save_directory) / "README.md")
    return card


__all__ = [
    "push_to_hub",
    "register_for_auto_classes",
    "register_model_card_writer",
    "save_for_hub",
    "write_model_card",
]
