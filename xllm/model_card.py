"""The model card of a saved X-LLM folder (README.md), rendered from the package's template.

The template is `model_card_template.md` (the repository's `model_card.md` links to it, so it ships in
the wheel); `huggingface_hub.ModelCard` renders it with Hub metadata and, given evaluation reports, a
model-index. Every `save_pretrained` of an X-LLM model writes the card where the folder has none
(`XLLMPreTrainedModel.model_card_writer`, set when the package registers its classes).
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import EvalResult, ModelCard, ModelCardData

if TYPE_CHECKING:
    from xllm.modeling_xllm.configuration_xllm import XLLMConfig

MODEL_CARD_TEMPLATE = Path(__file__).resolve().parent / "model_card_template.md"

# Hub task id for each task of `xllm evaluate`.
EVALUATION_TASK_TYPES = {
    "captioning": "image-to-text",
    "vqa": "visual-question-answering",
    "asr": "automatic-speech-recognition",
    "classification": "zero-shot-classification",
    "discrn": "any-to-any",
}


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
        dataset = (
            report.get("dataset")
            or report.get("benchmark")
            or Path(str(report.get("data", report["task"]))).stem
        )
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


def component_rows(config: "XLLMConfig") -> list[dict]:
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
                "frame_positions": interface.frame_positions,
            }
        )
    return rows


def write_model_card(
    save_directory: str | Path,
    config: "XLLMConfig",
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


__all__ = ["write_model_card"]
