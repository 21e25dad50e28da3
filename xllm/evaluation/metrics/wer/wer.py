"""Corpus word error rate of transcripts, computed by jiwer.

Reference implementation: ``jiwer.wer`` (github.com/jitsi/jiwer), which is also what the Hub's
canonical ``wer`` metric calls: the word-level edit operations (substitutions, deletions,
insertions) summed over the corpus, divided by the number of reference words. The text is
compared as given (split on whitespace); normalise casing and punctuation beforehand if the
task asks for it.
"""

import datasets
import evaluate
import jiwer

_CITATION = """\
@inproceedings{morris2004,
  title={From WER and RIL to MER and WIL: improved evaluation measures for connected speech recognition},
  author={Morris, Andrew Cameron and Maier, Viktoria and Green, Phil},
  booktitle={Interspeech},
  year={2004}
}
"""

_DESCRIPTION = """\
Word error rate: (substitutions + deletions + insertions) / reference words, over the whole corpus.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one transcript per utterance from the recogniser.
    references (`list[str]`): the reference transcript of each utterance (not empty).
Returns:
    wer (`float`): the corpus word error rate (0 is perfect; it can exceed 1).
Examples:
    >>> wer = evaluate.load("xllm/evaluation/metrics/wer")
    >>> wer.compute(predictions=["a red square"], references=["a blue square"])["wer"]
    0.3333333333333333
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Wer(evaluate.Metric):
    """Word error rate as an `evaluate` metric."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/jitsi/jiwer"],
            reference_urls=["https://en.wikipedia.org/wiki/Word_error_rate"],
        )

    def _compute(self, predictions, references) -> dict:
        if len(references) == 0:
            raise ValueError("references must hold at least one transcript, got none")
        return {"wer": jiwer.wer(reference=list(references), hypothesis=list(predictions))}
