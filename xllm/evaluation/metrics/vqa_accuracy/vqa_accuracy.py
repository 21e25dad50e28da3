"""VQAv2 accuracy with the official answer normalisation.

Reference implementation: the official VQA evaluation script (github.com/GT-Vision-Lab/VQA,
``PythonEvaluationTools/vqaEvaluation/vqaEval.py``), as used by LAVIS for InstructBLIP. Answers
are normalised (punctuation, number words to digits, articles dropped, contractions restored);
an answer scores min(1, matches / 3) against the other annotators' answers, averaged over the
leave-one-out subsets of the (usually ten) reference answers.

Two deliberate differences: the official script skips the normalisation when all ten reference
answers agree, which scores a generated "Yes." as wrong against ten "yes"; we always normalise.
With a single reference answer there is no leave-one-out subset, so the score is the exact
match of the normalised answers.
"""

import datasets
import evaluate

from xllm.evaluation.vqa_normalization import normalize_answer

_CITATION = """\
@inproceedings{goyal2017making,
  title={Making the V in VQA Matter: Elevating the Role of Image Understanding in Visual Question Answering},
  author={Goyal, Yash and Khot, Tejas and Summers-Stay, Douglas and Batra, Dhruv and Parikh, Devi},
  booktitle={CVPR},
  year={2017}
}
"""

_DESCRIPTION = """\
VQAv2 accuracy: min(1, number of matching human answers / 3), averaged over the leave-one-out
subsets of the reference answers, after the official answer normalisation.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated answer per question.
    references (`list[list[str]]`): the human answers of each question (ten in VQAv2).
Returns:
    vqa_accuracy (`float`): the mean accuracy over questions, between 0 and 1.
    vqa_accuracy_per_item (`list[float]`): one accuracy per question.
Examples:
    >>> vqa = evaluate.load("xllm/evaluation/metrics/vqa_accuracy")
    >>> vqa.compute(predictions=["Two."], references=[["2"] * 2 + ["3"] * 8])["vqa_accuracy"]
    0.6
"""


def vqa_score(prediction: str, answers: list[str]) -> float:
    """min(1, matches / 3) over the other annotators, averaged over which annotator is left out."""
    prediction = normalize_answer(prediction)
    matches = [normalize_answer(answer) == prediction for answer in answers]
    if len(matches) == 1:
        return float(matches[0])
    total_matches = sum(matches)
    return sum(min(1.0, (total_matches - left_out) / 3) for left_out in matches) / len(matches)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VqaAccuracy(evaluate.Metric):
    """VQAv2 accuracy as an `evaluate` metric."""

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
            codebase_urls=["https://github.com/GT-Vision-Lab/VQA"],
            reference_urls=["https://visualqa.org/evaluation.html"],
        )

    def _compute(self, predictions, references) -> dict:
        if len(predictions) == 0:
            raise ValueError("predictions must hold at least one answer, got none")
        for index, answers in enumerate(references):
            if len(answers) == 0:
                raise ValueError(
                    f"references must hold at least one answer per question, question {index} has none"
                )
        scores = [
            vqa_score(prediction, answers)
            for prediction, answers in zip(predictions, references, strict=True)
        ]
        return {"vqa_accuracy": sum(scores) / len(scores), "vqa_accuracy_per_item": scores}
