"""The language of the synthetic world: attributes, captions, questions and instructions.

Everything the world says is built from the tables in this file, so the whole language is a small,
closed set of lower-case words separated by single spaces (punctuation such as "?" and ":" is its
own word). A word-level tokenizer that splits on spaces covers it exactly: see `world_vocabulary`.
"""

import itertools
import re

MODALITIES = ("image", "video", "speech", "audio", "point_cloud")

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")
SPEEDS = ("slowly", "quickly")

# The values each modality's items are drawn from, in a fixed order (the order matters for splits).
ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "image": {
        "colour": COLOURS,
        "shape": ("circle", "square", "triangle", "star"),
        "size": SIZES,
        "position": ("left", "right", "top", "bottom", "centre"),
    },
    "point_cloud": {
        "colour": COLOURS,
        "shape": ("sphere", "cube", "cylinder", "cone", "torus"),
        "size": SIZES,
    },
    "video": {
        "colour": COLOURS,
        "shape": ("circle", "square", "triangle", "star"),
        "direction": ("left", "right", "up", "down"),
        "speed": SPEEDS,
    },
    "audio": {
        "instrument": ("piano", "flute", "drum", "bell", "violin"),
        "pitch": ("low", "high"),
        "speed": SPEEDS,
    },
}

# One fixed sentence structure per modality. Speech items speak the captions of the other modalities.
CAPTION_TEMPLATES = {
    "image": "a {size} {colour} {shape} at the {position}",
    "point_cloud": "a {size} {colour} {shape}",
    "video": "a {colour} {shape} moves {direction} {speed}",
    "audio": "a {instrument} playing {pitch} notes {speed}",
}

CAPTION_INSTRUCTIONS = {
    "image": ("describe the image", "what is in the image ?", "what is this image ?"),
    "point_cloud": ("describe the 3d object", "what is this 3d object ?", "what is in the 3d object ?"),
    "video": ("describe the video", "what is in the video ?", "what is this video ?"),
    "audio": ("describe the sound", "what is in the sound ?", "what is this sound ?"),
    "speech": ("transcribe the speech", "what is in the speech ?", "what does the speaker say ?"),
}

_OBJECT_QUESTIONS = {
    "colour": ("what colour is the object ?", "what is the colour of the object ?"),
    "shape": ("what shape is the object ?", "what is the shape of the object ?"),
    "size": ("what size is the object ?", "is the object small or large ?"),
}

ATTRIBUTE_QUESTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "image": {
        **_OBJECT_QUESTIONS,
        "position": ("where is the object ?", "what is the position of the object ?"),
    },
    "point_cloud": _OBJECT_QUESTIONS,
    "video": {
        "colour": _OBJECT_QUESTIONS["colour"],
        "shape": _OBJECT_QUESTIONS["shape"],
        "direction": ("where does the object move ?", "which way does the object move ?"),
        "speed": ("how fast does the object move ?", "does the object move slowly or quickly ?"),
    },
    "audio": {
        "instrument": ("what instrument is playing ?", "which instrument is it ?"),
        "pitch": ("is the pitch high or low ?", "what is the pitch of the notes ?"),
        "speed": ("how fast is the instrument playing ?", "is the instrument playing slowly or quickly ?"),
    },
}

# Cross-modal comparisons: "which of the two is <word> ?" where <word> names the target's value,
# as a comparative for the two-valued attributes (the other item then has the other value).
COMPARATIVES = {"large": "larger", "small": "smaller", "quickly": "faster", "slowly": "slower"}
COMPARISON_QUESTIONS = ("which of the two is {word} ?", "which of the two options is {word} ?")
COMPARISON_ANSWERS = ("first", "second")


def caption(modality: str, attributes: dict[str, str]) -> str:
    """The caption of an item of `modality` (not speech) with these attribute values."""
    if modality not in CAPTION_TEMPLATES:
        raise ValueError(f"modality must be one of {sorted(CAPTION_TEMPLATES)}, got {modality!r}")
    return CAPTION_TEMPLATES[modality].format(**attributes)


def random_descriptions(modality: str, count: int, rng) -> list[dict]:
    """`count` text-only items of `modality` (attributes and caption) with every attribute drawn
    uniformly and independently, so held-out combinations appear too: the world's *language*
    (what a pretrained LLM has read) has every combination; only media of held-out combinations
    are held out. `rng` is a numpy Generator."""
    if modality not in CAPTION_TEMPLATES:
        raise ValueError(f"modality must be one of {sorted(CAPTION_TEMPLATES)}, got {modality!r}")
    items = []
    for index in range(count):
        attributes = {
            name: values[rng.integers(len(values))] for name, values in ATTRIBUTES[modality].items()
        }
        items.append({"index": index, "attributes": attributes, "caption": caption(modality, attributes)})
    return items


def comparison_question(value: str, phrasing: int = 0) -> str:
    """The question whose answer is the item that has `value` (e.g. "red", "large", "quickly")."""
    return COMPARISON_QUESTIONS[phrasing].format(word=COMPARATIVES.get(value, value))


def comparison_prompt(question: str, first_caption: str, second_caption: str) -> str:
    """Text-only form of a comparison: the question first, then the two described options."""
    return f"{question} first : {first_caption} second : {second_caption}"


def _template_words(text: str) -> set[str]:
    return set(re.sub(r"\{\w+\}", " ", text).split())


def world_vocabulary() -> tuple[str, ...]:
    """Every word the world ever writes, sorted: templates, phrasings and attribute values."""
    phrasings = itertools.chain(
        CAPTION_TEMPLATES.values(),
        itertools.chain.from_iterable(CAPTION_INSTRUCTIONS.values()),
        (q for questions in ATTRIBUTE_QUESTIONS.values() for qs in questions.values() for q in qs),
        COMPARISON_QUESTIONS,
        (comparison_prompt("", "", ""),),
    )
    words = set().union(*(_template_words(text) for text in phrasings))
    values = {value for attributes in ATTRIBUTES.values() for vs in attributes.values() for value in vs}
    return tuple(sorted(words | values | set(COMPARATIVES.values()) | set(COMPARISON_ANSWERS)))


def instruction_pairs(modality: str, attributes: dict[str, str], text: str, rng) -> list[dict[str, str]]:
    """(instruction, answer) pairs of an item: its caption (or transcript) under a random phrasing,
    then one question per attribute of the modality (none for speech), each in a random phrasing.

    `rng` is a numpy Generator; `text` is the item's caption or transcript.
    """
    if modality not in CAPTION_INSTRUCTIONS:
        raise ValueError(f"modality must be one of {sorted(CAPTION_INSTRUCTIONS)}, got {modality!r}")
    instructions = CAPTION_INSTRUCTIONS[modality]
    pairs = [{"instruction": instructions[rng.integers(len(instructions))], "answer": text}]
    for name, questions in ATTRIBUTE_QUESTIONS.get(modality, {}).items():
        pairs.append({"instruction": questions[rng.integers(len(questions))], "answer": attributes[name]})
    return pairs
