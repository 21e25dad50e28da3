"""The official VQA answer normalisation, shared by the VQA and DisCRn metrics.

Reference: the official VQA evaluation script (github.com/GT-Vision-Lab/VQA,
``PythonEvaluationTools/vqaEvaluation/vqaEval.py``: ``processPunctuation`` then
``processDigitArticle``), which LAVIS copies as ``lavis/common/vqa_tools/vqa_eval.py`` and applies to
VQA and DisCRn predictions (``lavis/tasks/vqa.py``).
"""

import re

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


__all__ = ["normalize_answer", "remove_punctuation"]
