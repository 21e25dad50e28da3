"""A pure-Python stand-in for the COCO caption evaluation tokenizer.

The COCO caption evaluation code (pycocoevalcap's ``PTBTokenizer``) runs the Stanford CoreNLP
PTB tokenizer in Java with ``-lowerCase`` and then drops the tokens of a fixed punctuation list.
Java is not something a metric should need, so this module approximates it in Python: lower
case, contractions split off the way PTB does (``don't`` -> ``do n't``, ``dog's`` -> ``dog 's``),
hyphenated words and decimal numbers kept whole, the same punctuation tokens dropped. Other
symbols (``%``, ``&``, ``$``) stay as tokens, as they do in COCO.
"""

import re

# The punctuation tokens removed by pycocoevalcap after PTB tokenisation, plus the raw characters
# that PTB would have rewritten into the bracket and quote tokens of that list.
PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
    + ['"', "(", ")", "{", "}"]
)

_CONTRACTION = re.compile(r"(\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-.]\w+)*|\.\.\.|--|\S")


def tokenize_caption(caption: str) -> str:
    """Return the caption as lower-case, space-separated PTB-like tokens without punctuation."""
    if not isinstance(caption, str):
        raise ValueError(f"caption must be a str, got {type(caption).__name__}")
    split_contractions = _CONTRACTION.sub(r"\1 \2", caption.lower())
    tokens = _TOKEN.findall(split_contractions)
    return " ".join(token for token in tokens if token not in PTB_PUNCTUATION)


def prepare_captions(
    predictions: list[str], references: list[list[str]], pretokenized: bool
) -> tuple[list[str], list[list[str]]]:
    """Check a caption corpus and tokenise it, unless it is already tokenised.

    Shared by the caption metrics so that they all see the same tokens. Pre-tokenised captions
    are taken as they are: tokens separated by whitespace.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have the same length, got {len(predictions)} and {len(references)}"
        )
    for index, item_references in enumerate(references):
        if len(item_references) == 0:
            raise ValueError(f"references must hold at least one caption per item, item {index} has none")
    if pretokenized:
        return list(predictions), [list(item_references) for item_references in references]
    return (
        [tokenize_caption(caption) for caption in predictions],
        [[tokenize_caption(caption) for caption in item_references] for item_references in references],
    )
