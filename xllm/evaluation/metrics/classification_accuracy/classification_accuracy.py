"""Zero-shot classification accuracy from generated text.

Reference: the open-ended classification protocol of X-InstructBLIP (Panagopoulou et al., 2023,
arXiv 2311.18799), where the model names the class in free text (e.g. ModelNet40 for 3D,
ESC-50 for audio). The generated text is normalised (lower case, punctuation removed, the same
tokenizer as the caption metrics) and matched to the class names: an exact match wins;
otherwise the class whose name appears in the text as whole words. Text that names no class, or
several, counts as wrong and is reported in `invalid_rate`. Ranking the class names by the
LLM's loss needs the model, so that variant lives in the evaluation runner, not here.
"""

import datasets
import evaluate

from xllm.evaluation.caption_tokenizer import tokenize_caption

_CITATION = """\
@article{panagopoulou2023xinstructblip,
  title={X-InstructBLIP: A Framework for aligning X-Modal instruction-aware representations to LLMs and Emergent Cross-modal Reasoning},
  author={Panagopoulou, Artemis and Xue, Le and Yu, Ning and Li, Junnan and Li, Dongxu and Joty, Shafiq and Xu, Ran and Savarese, Silvio and Xiong, Caiming and Niebles, Juan Carlos},
  journal={arXiv preprint arXiv:2311.18799},
  year={2023}
}
"""

_DESCRIPTION = """\
Accuracy of classes named in generated text: exact normalised match with a class name, else the
single class name contained in the text; no class or several classes count as wrong.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the generated text for each item.
    references (`list[str]`): the class name of each item.
    class_names (`list[str]`, *optional*): every class of the task; defaults to the distinct
        references (pass it when some classes may be missing from the references).
Returns:
    accuracy (`float`): share of items matched to their own class.
    invalid_rate (`float`): share of items matched to no class or to several.
Examples:
    >>> classification = evaluate.load("xllm/evaluation/metrics/classification_accuracy")
    >>> classification.compute(predictions=["It is a red cube.", "sphere"], references=["cube", "cone"],
    ...                        class_names=["cube", "sphere", "cone"])
    {'accuracy': 0.5, 'invalid_rate': 0.0}
"""


def matched_class(text: str, class_names: list[str]) -> str | None:
    """The normalised class name the text names, or None when it names none or several."""
    normalized_text = tokenize_caption(text)
    if normalized_text in class_names:
        return normalized_text
    padded_text = f" {normalized_text} "
    contained = [name for name in class_names if f" {name} " in padded_text]
    return contained[0] if len(contained) == 1 else None


def normalized_class_names(class_names: list[str]) -> list[str]:
    """Normalise the class names, which must stay distinct and non-empty."""
    names = [tokenize_caption(name) for name in class_names]
    if "" in names or len(set(names)) != len(names):
        raise ValueError(
            f"class_names must be distinct and non-empty after normalisation, got {list(class_names)}"
        )
    return names


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClassificationAccuracy(evaluate.Metric):
    """Accuracy of generated class names as an `evaluate` metric."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/salesforce/LAVIS/tree/main/projects/xinstructblip"],
            reference_urls=["https://arxiv.org/abs/2311.18799"],
        )

    def _compute(self, predictions, references, class_names: list[str] | None = None) -> dict:
        if len(predictions) == 0:
            raise ValueError("predictions must hold at least one text, got none")
        names = normalized_class_names(sorted(set(references)) if class_names is None else class_names)
        labels = [tokenize_caption(reference) for reference in references]
        unknown = sorted(set(labels) - set(names))
        if unknown:
            raise ValueError(f"references must be among class_names {names}, got {unknown}")
        chosen = [matched_class(text, names) for text in predictions]
        hits = sum(choice == label for choice, label in zip(chosen, labels, strict=True))
        invalid = sum(choice is None for choice in chosen)
        return {"accuracy": hits / len(chosen), "invalid_rate": invalid / len(chosen)}
