"""CIDEr-D, computed exactly as the COCO caption evaluation code does.

Reference implementation: ``CiderScorer`` in pycocoevalcap (github.com/tylin/coco-caption,
``pycocoevalcap/cider/cider_scorer.py``). Each caption becomes one tf-idf vector per n-gram order
(n = 1..4), with document frequencies counted over the reference sets of the evaluated corpus.
A prediction is compared with each reference by a clipped cosine similarity, damped by a
Gaussian penalty on the length difference (sigma 6); the result is averaged over n-gram orders
and references and multiplied by 10. The corpus score is the mean over items.
"""

import math
from collections import Counter
from typing import NamedTuple

import datasets
import evaluate

from xllm.evaluation.caption_tokenizer import prepare_captions

_CITATION = """\
@inproceedings{vedantam2015cider,
  title={CIDEr: Consensus-based Image Description Evaluation},
  author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={CVPR},
  year={2015}
}
"""

_DESCRIPTION = """\
CIDEr-D consensus score of generated captions against several reference captions per item, as in
the COCO caption evaluation code (n-grams 1-4, corpus document frequencies, clipped similarity,
Gaussian length penalty with sigma 6, times 10).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated caption per item.
    references (`list[list[str]]`): the reference captions of each item.
    pretokenized (`bool`, defaults to False): the captions are already tokenised (tokens split by
        whitespace); otherwise they go through the shared COCO-like caption tokenizer.
    max_n (`int`, defaults to 4): longest n-gram.
    sigma (`float`, defaults to 6.0): width of the Gaussian length penalty.
Returns:
    cider (`float`): the corpus score, the mean of the per-item scores.
    cider_per_item (`list[float]`): one score per item.
    A corpus of one item always scores 0: every n-gram then occurs in all reference sets, so
    every idf weight is log(1 / 1) = 0.
Examples:
    >>> cider = evaluate.load("xllm/evaluation/metrics/cider")
    >>> cider.compute(predictions=["a red square", "a blue circle"],
    ...               references=[["a red square", "a small red square"], ["a big blue circle"]])["cider"]
    4.139722703178746
"""


def count_ngrams(caption: str, max_n: int) -> Counter:
    """Count every n-gram (as a tuple of tokens) of lengths 1..max_n in a tokenised caption."""
    words = caption.split()
    return Counter(
        tuple(words[start : start + n]) for n in range(1, max_n + 1) for start in range(len(words) - n + 1)
    )


def document_frequencies(reference_counts: list[list[Counter]]) -> Counter:
    """Number of items whose reference set contains each n-gram."""
    frequencies = Counter()
    for item_counts in reference_counts:
        frequencies.update(set().union(*item_counts))
    return frequencies


class WeightedCaption(NamedTuple):
    """A caption as CIDEr sees it: one tf-idf vector per n-gram order, their norms, its length."""

    vectors: list[dict[tuple[str, ...], float]]
    norms: list[float]
    length: int


def tfidf_vectors(
    counts: Counter, frequencies: Counter, log_corpus_size: float, max_n: int
) -> tuple[list[dict], list[float]]:
    """Split n-gram counts into one tf-idf vector per order, with the vectors' norms.

    An n-gram unseen in the references gets document frequency 1, as in the reference code.
    """
    vectors = [{} for _ in range(max_n)]
    for ngram, count in counts.items():
        vectors[len(ngram) - 1][ngram] = count * (log_corpus_size - math.log(max(1.0, frequencies[ngram])))
    norms = [math.sqrt(sum(weight * weight for weight in vector.values())) for vector in vectors]
    return vectors, norms


def caption_length(counts: Counter) -> int:
    """Length used by the Gaussian penalty: the number of bigrams, as in the reference code.

    That is the word count minus one for any non-empty caption, so length differences are the
    word-count differences except against an empty caption; we count bigrams to match exactly.
    """
    return sum(count for ngram, count in counts.items() if len(ngram) == 2)


def clipped_similarity(prediction: WeightedCaption, reference: WeightedCaption, sigma: float) -> float:
    """CIDEr-D similarity of two captions, averaged over n-gram orders.

    The prediction's weights are clipped at the reference's so that repeating an n-gram cannot
    raise the score; a Gaussian of the length difference damps captions of the wrong length.
    """
    length_penalty = math.exp(-((prediction.length - reference.length) ** 2) / (2 * sigma**2))
    similarities = []
    for prediction_vector, reference_vector, prediction_norm, reference_norm in zip(
        prediction.vectors, reference.vectors, prediction.norms, reference.norms, strict=True
    ):
        overlap = sum(
            min(weight, reference_vector.get(ngram, 0.0)) * reference_vector.get(ngram, 0.0)
            for ngram, weight in prediction_vector.items()
        )
        if prediction_norm != 0 and reference_norm != 0:
            overlap /= prediction_norm * reference_norm
        similarities.append(overlap * length_penalty)
    return sum(similarities) / len(similarities)


def cider_d_scores(
    predictions: list[str], references: list[list[str]], max_n: int, sigma: float
) -> list[float]:
    """Per-item CIDEr-D of tokenised captions, with document frequencies from this corpus."""
    reference_counts = [[count_ngrams(caption, max_n) for caption in item] for item in references]
    frequencies = document_frequencies(reference_counts)
    log_corpus_size = math.log(float(len(references)))

    def weigh(counts: Counter) -> WeightedCaption:
        vectors, norms = tfidf_vectors(counts, frequencies, log_corpus_size, max_n)
        return WeightedCaption(vectors, norms, caption_length(counts))

    scores = []
    for prediction, item_counts in zip(predictions, reference_counts, strict=True):
        weighted_prediction = weigh(count_ngrams(prediction, max_n))
        similarities = [
            clipped_similarity(weighted_prediction, weigh(counts), sigma) for counts in item_counts
        ]
        scores.append(10.0 * sum(similarities) / len(similarities))
    return scores


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Cider(evaluate.Metric):
    """CIDEr-D as an `evaluate` metric."""

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
            reference_urls=["https://arxiv.org/abs/1411.5726"],
        )

    def _compute(
        self, predictions, references, pretokenized: bool = False, max_n: int = 4, sigma: float = 6.0
    ) -> dict:
        if len(predictions) == 0:
            raise ValueError("predictions must hold at least one caption, got none")
        predictions, references = prepare_captions(predictions, references, pretokenized)
        scores = cider_d_scores(predictions, references, max_n, sigma)
        return {"cider": sum(scores) / len(scores), "cider_per_item": scores}
