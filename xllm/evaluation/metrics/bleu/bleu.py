"""Corpus BLEU-1..4 with brevity penalty, as the COCO caption evaluation code reports it.

Reference implementation: ``BleuScorer`` in pycocoevalcap (github.com/tylin/coco-caption,
``pycocoevalcap/bleu/bleu_scorer.py``, ``compute_score(option="closest")``), which is standard
corpus BLEU (Papineni et al., 2002): n-gram matches clipped by the largest count in any
reference, summed over the corpus; the reference length of an item is the one closest to the
prediction's length (the shorter on ties). BLEU-n is the geometric mean of the precisions of
orders 1..n times the brevity penalty. Unlike the reference code we add no epsilon to the
counts, so an order with no match gives exactly 0 instead of a number near 1e-4.
"""

import math
from collections import Counter

import datasets
import evaluate

from xllm.evaluation.caption_tokenizer import prepare_captions

_CITATION = """\
@inproceedings{papineni2002bleu,
  title={BLEU: a Method for Automatic Evaluation of Machine Translation},
  author={Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing},
  booktitle={ACL},
  year={2002}
}
"""

_DESCRIPTION = """\
Corpus-level BLEU-1 to BLEU-4 of generated captions against several references per item, with the
brevity penalty and the closest reference length, as in the COCO caption evaluation code.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated caption per item.
    references (`list[list[str]]`): the reference captions of each item.
    pretokenized (`bool`, defaults to False): the captions are already tokenised (tokens split by
        whitespace); otherwise they go through the shared COCO-like caption tokenizer.
    max_n (`int`, defaults to 4): report BLEU-1 up to BLEU-max_n.
Returns:
    bleu_1 ... bleu_4 (`float`): corpus BLEU of each order, brevity penalty included.
    brevity_penalty (`float`), length_ratio (`float`): prediction length over reference length.
Examples:
    >>> bleu = evaluate.load("xllm/evaluation/metrics/bleu")
    >>> bleu.compute(predictions=["a red square"], references=[["a red square"]])["bleu_1"]
    1.0
"""


def ngram_counts(words: list[str], n: int) -> Counter:
    """Count the n-grams of one order."""
    return Counter(tuple(words[start : start + n]) for start in range(len(words) - n + 1))


def closest_reference_length(prediction_length: int, reference_lengths: list[int]) -> int:
    """The reference length nearest the prediction's, the shorter one on ties."""
    return min(reference_lengths, key=lambda length: (abs(length - prediction_length), length))


def corpus_bleu(predictions: list[str], references: list[list[str]], max_n: int) -> dict:
    """Corpus BLEU of tokenised captions for every order up to max_n."""
    matches, totals = [0] * max_n, [0] * max_n
    prediction_length, reference_length = 0, 0
    for prediction, item_references in zip(predictions, references, strict=True):
        words = prediction.split()
        reference_words = [reference.split() for reference in item_references]
        prediction_length += len(words)
        reference_length += closest_reference_length(
            len(words), [len(reference) for reference in reference_words]
        )
        for n in range(1, max_n + 1):
            counts = ngram_counts(words, n)
            max_reference_counts = Counter()
            for reference in reference_words:
                max_reference_counts |= ngram_counts(reference, n)
            matches[n - 1] += sum(min(count, max_reference_counts[ngram]) for ngram, count in counts.items())
            totals[n - 1] += max(0, len(words) - n + 1)

    length_ratio = prediction_length / reference_length if reference_length else 0.0
    brevity_penalty = (
        1.0 if length_ratio >= 1 else (math.exp(1 - 1 / length_ratio) if length_ratio > 0 else 0.0)
    )
    precisions = [match / total if total else 0.0 for match, total in zip(matches, totals, strict=True)]
    scores = {}
    for n in range(1, max_n + 1):
        first_precisions = precisions[:n]
        geometric_mean = (
            0.0 if min(first_precisions) == 0 else math.exp(sum(map(math.log, first_precisions)) / n)
        )
        scores[f"bleu_{n}"] = brevity_penalty * geometric_mean
    return {**scores, "brevity_penalty": brevity_penalty, "length_ratio": length_ratio}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    """Corpus BLEU-1..4 as an `evaluate` metric."""

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
            reference_urls=["https://aclanthology.org/P02-1040/"],
        )

    def _compute(self, predictions, references, pretokenized: bool = False, max_n: int = 4) -> dict:
        predictions, references = prepare_captions(predictions, references, pretokenized)
        return corpus_bleu(predictions, references, max_n)
