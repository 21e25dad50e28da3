"""The world's items as training examples and evaluation prompts for the XLLM trainers.

Examples follow the trainers' format: chat `messages` whose media parts take, in order, the items
of the example's media column (named by processor keyword). Media are decoded once, up front:
images stay PIL images, videos become frame arrays, sounds and speech waveform dicts, point
clouds (points, 6) arrays.
"""

import numpy as np

from ..manifests import media_keywords
from ..world.discrn import SHARED_ATTRIBUTES, comparison_pairs
from ..world.vocabulary import CAPTION_INSTRUCTIONS


def world_media(value, modality: str):
    """One media value of a world dataset row, in the form the processor takes."""
    if modality == "video":
        frames = value.get_frames_in_range(0, len(value)).data  # (frames, C, H, W) uint8
        return frames.permute(0, 2, 3, 1).numpy()
    if modality in ("speech", "audio"):
        samples = value.get_all_samples()
        return {"array": samples.data.mean(0).numpy(), "sampling_rate": samples.sample_rate}
    if modality == "point_cloud":
        return np.asarray(value, dtype=np.float32)
    return value


def world_items(dataset, modality: str, limit: int | None = None) -> list[dict]:
    """Rows with decoded media under "media" (plus id, caption, attributes, qa, transcript)."""
    rows = dataset.select(range(min(limit, len(dataset)))) if limit else dataset
    items = []
    for row in rows:
        item = {key: row[key] for key in ("id", "caption", "attributes", "qa", "transcript") if key in row}
        item["media"] = world_media(row[modality], modality)
        items.append(item)
    return items


def chat_example(
    modality: str, media, instruction: str, answer: str | None = None, transcript: str | None = None
) -> dict:
    """A one-turn example: the media, then the instruction; the answer as the assistant turn. A
    speech item's `transcript` gives CIF its target length in training."""
    messages = [
        {"role": "user", "content": [{"type": modality}, {"type": "text", "text": " " + instruction}]}
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    example = {"messages": messages, media_keywords()[modality]: [media]}
    if transcript is not None:
        example["transcript"] = transcript
    return example


def caption_examples(items: list[dict], modality: str, rng: np.random.Generator) -> list[dict]:
    """Stage 2 data: describe the media (speech: transcribe it), in a random phrasing."""
    instructions = CAPTION_INSTRUCTIONS[modality]
    target = "transcript" if modality == "speech" else "caption"
    return [
        chat_example(
            modality,
            item["media"],
            instructions[rng.integers(len(instructions))],
            item[target],
            item.get("transcript"),
        )
        for item in items
    ]


def instruction_examples(items: list[dict], modality: str) -> list[dict]:
    """Stage 3 data: every (instruction, answer) pair of every item."""
    return [
        chat_example(modality, item["media"], pair["instruction"], pair["answer"], item.get("transcript"))
        for item in items
        for pair in item["qa"]
    ]


def comparison_example(
    question: str, first: tuple[str, object], second: tuple[str, object], answer: str | None = None
) -> dict:
    """A DisCRn prompt: "<question> first : <media> second : <media>", as the LLM learned it on text;
    with `answer`, a training example."""
    (first_modality, first_media), (second_modality, second_media) = first, second
    content = [
        {"type": "text", "text": f"{question} first : "},
        {"type": first_modality},
        {"type": "text", "text": " second : "},
        {"type": second_modality},
    ]
    example = {"messages": [{"role": "user", "content": content}]}
    if answer is not None:
        example["messages"].append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    for modality, media in ((first_modality, first_media), (second_modality, second_media)):
        example.setdefault(media_keywords()[modality], []).append(media)
    return example


def same_modality_comparisons(
    items: list[dict], modality: str, count: int, rng: np.random.Generator
) -> list[dict]:
    """Stage 3 data: "which of the two ...?" over two items of the *same* modality, on the
    attributes it shares with its DisCRn partner. Two modalities never appear together, so the
    cross-modal test pairs stay unseen; the interface learns to speak in the comparison context."""
    attributes = next((names for pair, names in SHARED_ATTRIBUTES.items() if modality in pair), None)
    if attributes is None or count == 0:
        return []
    pool = [dict(item, index=index) for index, item in enumerate(items)]
    pairs = comparison_pairs((pool, pool), attributes, count, rng)
    return [
        comparison_example(
            pair["question"],
            (modality, pair["first"]["media"]),
            (modality, pair["second"]["media"]),
            pair["answer"],
        )
        for pair in pairs
    ]
