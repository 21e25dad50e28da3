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

import re

import datasets
import evaluate

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

ARTICLES = frozenset(["a", "an", "the"])
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
# Punctuation the official script removes or turns into a space (the period is handled apart).
PUNCTUATION = [
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]
# The official contraction table maps each contraction written without one of its apostrophes
# ("dont", "couldnt've", "couldn'tve") back to the full form; it is generated from the full forms.
CONTRACTED_FORMS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't
he'd he'd've he's how'd how'll how's i'd've i'm i've isn't it'd it'd've it'll ma'am mightn't
mightn't've might've mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've
should've shouldn't shouldn't've somebody'd've somebody'll somebody's someone'd someone'd've
someone'll someone's something'd something'd've something'll that's there'd there'd've there're
there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll what're
what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll why're
why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're
you've
""".split()
CONTRACTIONS = {
    form[:position] + form[position + 1 :]: form
    for form in CONTRACTED_FORMS
    for position, character in enumerate(form)
    if character == "'"
}
# Digit-comma-digit ("1,000") makes the script delete punctuation instead of spacing it out.
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# The official pattern "(?!<=\d)(\.)(?!\d)" has a mistyped look-behind that never applies:
# in effect it deletes every period not followed by a digit ("2.5" keeps its period).
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def remove_punctuation(answer: str) -> str:
    """Delete punctuation touching a space (or anywhere, if the answer has "1,000"), else space it out."""
    deletes_everywhere = _DIGIT_COMMA_DIGIT.search(answer) is not None
    cleaned = answer
    for mark in PUNCTUATION:
        if deletes_everywhere or mark + " " in answer or " " + mark in answer:
            cleaned = cleaned.replace(mark, "")
        else:
            cleaned = cleaned.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", cleaned)


def normalize_answer(answer: str) -> str:
    """The official VQA answer normalisation: whitespace, punctuation, case, numbers, articles, contractions."""
    words = remove_punctuation(answer.replace("\n", " ").replace("\t", " ").strip()).lower().split()
    digits = [NUMBER_WORDS.get(word, word) for word in words]
    return " ".join(CONTRACTIONS.get(word, word) for word in digits if word not in ARTICLES)


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
