"""DisCRn accuracy: which of two inputs of different modalities does the answer point to.

Reference: the DisCRn protocol of X-InstructBLIP (Panagopoulou et al., 2023, arXiv 2311.18799;
LAVIS ``projects/xinstructblip``). The model is asked which of two inputs (say an image and a 3D
object) fits a question, and answers in free text. The answer is normalised (lower case,
punctuation removed, surrounding filler words such as "the" or "one" dropped) and mapped to an
option through the accepted answers of each option: its position (first/second, left/right,
1st/2nd, a/b, (a)/(b)) or its modality's name and synonyms (image/picture/photo, 3d/point
cloud/shape/object, audio/sound, video/clip). An answer that maps to no option, or to both,
counts as wrong, and the share of such invalid answers is reported as well: on a two-option task
the published accuracies are below 50%, which only makes sense that way.

Beside it, on request (`lavis_scoring=True`), LAVIS's own scoring (`lavis_accuracy`; `DisCRNTask._report_metrics`, lavis/tasks/vqa.py:443-465):
the prediction gets the VQA normalisation, then the first accepted answer of the *correct* option
(discriminatory_reasoning_datasets.py:131-142, in that order) that is one of its space-separated words
replaces it, and it scores when it is one of those accepted answers. The accepted answers are not
normalised, so some ("a.", "(a)", and "a", which the normalisation drops as an article) can never match.
"""

import datasets
import evaluate

from xllm.evaluation.caption_tokenizer import tokenize_caption
from xllm.evaluation.vqa_normalization import normalize_answer

_CITATION = """\
@article{panagopoulou2023xinstructblip,
  title={X-InstructBLIP: A Framework for aligning X-Modal instruction-aware representations to LLMs and Emergent Cross-modal Reasoning},
  author={Panagopoulou, Artemis and Xue, Le and Yu, Ning and Li, Junnan and Li, Dongxu and Joty, Shafiq and Xu, Ran and Savarese, Silvio and Xiong, Caiming and Niebles, Juan Carlos},
  journal={arXiv preprint arXiv:2311.18799},
  year={2023}
}
"""

_DESCRIPTION = """\
Accuracy on the two-option DisCRn cross-modal reasoning task: the free-text answer is mapped to
an option by position words or modality names, then compared with the label; unmappable answers
are wrong and counted in `invalid_rate`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the model's answer for each item.
    references (`list[str]`): the correct option of each item, "first" or "second" (any
        accepted position word also works).
    modalities (`list[list[str]]`): the modalities of the first and the second input of each item,
        among "image", "video", "speech", "audio", "point_cloud".
    lavis_scoring (`bool`, default False): also report LAVIS's scoring.
Returns:
    accuracy (`float`): share of items whose answer maps to the correct option.
    invalid_rate (`float`): share of items whose answer maps to no single option.
    lavis_accuracy (`float`, with `lavis_scoring`): share of items LAVIS's DisCRn scoring counts correct.
Examples:
    >>> discrn = evaluate.load("xllm/evaluation/metrics/discrn_accuracy")
    >>> discrn.compute(predictions=["The image.", "(b)"], references=["first", "first"],
    ...                modalities=[["image", "point_cloud"], ["audio", "video"]])
    {'accuracy': 0.5, 'invalid_rate': 0.0}
"""

POSITION_ANSWERS = (
    frozenset(["first", "1st", "left", "a"]),
    frozenset(["second", "2nd", "right", "b"]),
)
MODALITY_ANSWERS = {
    "image": frozenset(["image", "picture", "photo"]),
    "video": frozenset(["video", "clip"]),
    "speech": frozenset(["speech"]),
    "audio": frozenset(["audio", "sound"]),
    "point_cloud": frozenset(["3d", "point cloud", "point_cloud", "point-cloud", "shape", "object"]),
}
# Words that may surround an accepted answer ("the first one", "option b") without changing it.
FILLER_WORDS = frozenset(["the", "a", "an", "one", "option", "input"])


def core_answer(answer: str) -> str:
    """Lower-case the answer, drop punctuation, then filler words at either end while others remain."""
    words = tokenize_caption(answer).split()
    while len(words) > 1 and words[0] in FILLER_WORDS:
        words = words[1:]
    while len(words) > 1 and words[-1] in FILLER_WORDS:
        words = words[:-1]
    return " ".join(words)


def answer_option(answer: str, modalities: list[str]) -> int | None:
    """Index (0 or 1) of the option the answer names, or None if it names no option or both."""
    core = core_answer(answer)
    options = {
        option
        for option in (0, 1)
        if core in POSITION_ANSWERS[option] or core in MODALITY_ANSWERS[modalities[option]]
    }
    return options.pop() if len(options) == 1 else None


# LAVIS's accepted answers (discriminatory_reasoning_datasets.py:131-142): the option's modality name
# as LAVIS spells it, then these, then synonyms of that modality name.
LAVIS_POSITION_ANSWERS = (
    ("the first option.", "the first", "left one", "(a) left", "(a) left one", "(a)", "a.", "A.", "a)", "(A)",
     "Input A", "Entity 1", "Object 1", "Entity A", "Object A", "left", "first", "1st", "input 1", "1", "a",
     "input a", "the first", "the left one"),
    ("the second option.", "the second.", "second option", "the second option", "second option.", "right one",
     "(b) right", "(b) right one", "(b)", "b)", "Input B", "right", "second", "2nd", "input 2", "2", "b",
     "input b", "Object 2", "Entity B", "Object B", "the second", "the right one", "the second one"),
)  # fmt: skip
LAVIS_MODALITY_NAMES = {"point_cloud": "pc"}
LAVIS_MODALITY_SYNONYMS = {
    "pc": ("3d", "3d model", "model", "rendering", "a 3d", "a 3d model"),
    "image": ("photo", "picture"),
    "audio": ("sound",),
}


def lavis_answers(option: int, modalities: list[str]) -> list[str]:
    """The answers LAVIS accepts for an option, in its order."""
    name = LAVIS_MODALITY_NAMES.get(modalities[option], modalities[option])
    return [name, *LAVIS_POSITION_ANSWERS[option], *LAVIS_MODALITY_SYNONYMS.get(name, ())]


def lavis_correct(prediction: str, option: int, modalities: list[str]) -> bool:
    """LAVIS's DisCRn decision (lavis/tasks/vqa.py:455-465) for the correct option `option`."""
    accepted = lavis_answers(option, modalities)
    prediction = normalize_answer(prediction)
    words = prediction.strip().split(" ")
    prediction = next((answer for answer in accepted if answer in words), prediction)
    return prediction in accepted


def check_modalities(modalities: list[list[str]]) -> None:
    """Raise unless every item names two known modalities."""
    for index, pair in enumerate(modalities):
        if len(pair) != 2 or any(modality not in MODALITY_ANSWERS for modality in pair):
            raise ValueError(
                f"modalities must be two of {sorted(MODALITY_ANSWERS)} per item, item {index} has {list(pair)}"
            )


def label_option(label: str, modalities: list[str]) -> int:
    """Index of the correct option, from a label such as "first" or "second"."""
    option = answer_option(label, modalities)
    if option is None:
        raise ValueError(f"references must name the first or the second option, got {label!r}")
    return option


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DiscrnAccuracy(evaluate.Metric):
    """DisCRn accuracy and invalid-answer rate as an `evaluate` metric."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                    "modalities": datasets.Sequence(datasets.Value("string")),
                }
            ),
            codebase_urls=["https://github.com/salesforce/LAVIS/tree/main/projects/xinstructblip"],
            reference_urls=["https://arxiv.org/abs/2311.18799"],
        )

    def _compute(self, predictions, references, modalities, lavis_scoring: bool = False) -> dict:
        if len(predictions) == 0:
            raise ValueError("predictions must hold at least one answer, got none")
        check_modalities(modalities)
        chosen = [answer_option(answer, pair) for answer, pair in zip(predictions, modalities, strict=True)]
        correct = [label_option(label, pair) for label, pair in zip(references, modalities, strict=True)]
        hits = sum(option == label for option, label in zip(chosen, correct, strict=True))
        invalid = sum(option is None for option in chosen)
        scores = {"accuracy": hits / len(chosen), "invalid_rate": invalid / len(chosen)}
        if lavis_scoring:
            lavis_hits = sum(
                lavis_correct(answer, label, pair)
                for answer, label, pair in zip(predictions, correct, modalities, strict=True)
            )
            scores["lavis_accuracy"] = lavis_hits / len(chosen)
        return scores
