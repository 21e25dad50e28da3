"""ROUGE-L of captions with several references, as the COCO caption evaluation code computes it.

Reference implementation: ``Rouge`` in pycocoevalcap (github.com/tylin/coco-caption,
``pycocoevalcap/rouge/rouge.py``). For each item, the longest common subsequence (LCS) of tokens
with every reference gives a precision (LCS over prediction length) and a recall (LCS over
reference length); the best precision and the best recall over the references, taken
separately, are combined into an F-measure with beta = 1.2. The corpus score is the mean.
"""

import datasets
import evaluate

from xllm.evaluation.caption_tokenizer import prepare_captions

_CITATION = """\
@inproceedings{lin2004rouge,
  title={ROUGE: A Package for Automatic Evaluation of Summaries},
  author={Lin, Chin-Yew},
  booktitle={Text Summarization Branches Out},
  year={2004}
}
"""

_DESCRIPTION = """\
ROUGE-L F-measure (beta 1.2) of generated captions against several references per item, as in the
COCO caption evaluation code: best LCS precision and best LCS recall over the references.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated caption per item.
    references (`list[list[str]]`): the reference captions of each item.
    pretokenized (`bool`, defaults to False): the captions are already tokenised (tokens split by
        whitespace); otherwise they go through the shared COCO-like caption tokenizer.
    beta (`float`, defaults to 1.2): weight of recall against precision.
Returns:
    rouge_l (`float`): the mean of the per-item scores.
    rouge_l_per_item (`list[float]`): one score per item.
Examples:
    >>> rouge_l = evaluate.load("xllm/evaluation/metrics/rouge_l")
    >>> rouge_l.compute(predictions=["a red square"], references=[["a red square"]])["rouge_l"]
    1.0
"""


def longest_common_subsequence(first: list[str], second: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (dynamic programming, one row)."""
    previous_row = [0] * (len(second) + 1)
    for first_token in first:
        row = [0]
        for column, second_token in enumerate(second, start=1):
            row.append(
                previous_row[column - 1] + 1
                if first_token == second_token
                else max(previous_row[column], row[-1])
            )
        previous_row = row
    return previous_row[-1]


def rouge_l_score(prediction: str, references: list[str], beta: float) -> float:
    """ROUGE-L F-measure of one tokenised prediction against its tokenised references."""
    prediction_words = prediction.split()
    best_precision, best_recall = 0.0, 0.0
    for reference in references:
        reference_words = reference.split()
        common = longest_common_subsequence(prediction_words, reference_words)
        if common:
            best_precision = max(best_precision, common / len(prediction_words))
            best_recall = max(best_recall, common / len(reference_words))
    if best_precision == 0 or best_recall == 0:
        return 0.0
    return (1 + beta**2) * best_precision * best_recall / (best_recall + beta**2 * best_precision)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeL(evaluate.Metric):
    """COCO ROUGE-L as an `evaluate` metric."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            codebase_urls=["https://github.com/tylin/coco-caption"],
            reference_urls=["https://aclanthology.org/W04-1013/"],
        )

    def _compute(self, predictions, references, pretokenized: bool = False, beta: float = 1.2) -> dict:
        if len(predictions) == 0:
            raise ValueError("predictions must hold at least one caption, got none")
        predictions, references = prepare_captions(predictions, references, pretokenized)
        scores = [
            rouge_l_score(prediction, item, beta)
            for prediction, item in zip(predictions, references, strict=True)
        ]
        return {"rouge_l": sum(scores) / len(scores), "rouge_l_per_item": scores}
