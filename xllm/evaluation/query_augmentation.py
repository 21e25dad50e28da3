"""`xllm augment`: question/answer instruction data from captions, by a text LLM's round trip.

Query data augmentation of X-InstructBLIP (arXiv 2311.18799, §4): an open LLM (flan-t5-xxl in
the paper) (1) picks an answer span from a caption, (2) writes a question for that answer,
(3) answers its own question again from the caption. A pair is kept only when the span is
extractive (it occurs in the caption) and the second answer agrees with it (fuzzy ratio > 90).

Any local transformers text-generation model works, encoder-decoder (T5) or decoder-only; the
annotator is a plain `TextGenerator` (prompts in, completions out), so tests can script one.
This module also holds the pieces the DisCRn builder shares: `load_text_generator` and
`round_trip_agrees`. `augment_manifest` (`xllm augment`) reads a captioned manifest of the training
format (the caption is each example's answer) and writes the kept pairs as a manifest of the same
format: the media, `prompt` (the question), `response` (the answer) and `caption`.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from datasets import Dataset
from rapidfuzz import fuzz
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from xllm.evaluation.caption_tokenizer import tokenize_caption
from xllm.manifests import example_answer, load_manifest, media_keywords

TextGenerator = Callable[[list[str]], list[str]]
CONSISTENCY_THRESHOLD = 90.0

SPAN_PROMPT = (
    "Caption: {caption}\nCopy a short phrase from the caption that answers a question about it.\nPhrase:"
)
QUESTION_PROMPT = 'Caption: {caption}\nWrite a question whose answer is "{answer}".\nQuestion:'
ANSWER_PROMPT = "Caption: {caption}\nQuestion: {question}\nShort answer:"


def load_text_generator(
    model_path: str | Path, max_new_tokens: int = 64, batch_size: int = 8, device: str | None = None
) -> TextGenerator:
    """Greedy batched generation with a local seq2seq or causal LM; returns only the new text.

    Written on `generate` directly: transformers 5 has no text2text pipeline, and one code path
    serves both kinds of model (only the prompt tokens to cut off differ).
    """
    config = AutoConfig.from_pretrained(model_path)
    model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model_class.from_pretrained(model_path).eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    @torch.inference_mode()
    def generate(prompts: list[str]) -> list[str]:
        completions = []
        for start in range(0, len(prompts), batch_size):
            inputs = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(
                device
            )
            outputs = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            new_tokens = outputs if config.is_encoder_decoder else outputs[:, inputs["input_ids"].shape[1] :]
            completions += [
                text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            ]
        return completions

    return generate


def round_trip_agrees(first: str, second: str, threshold: float = CONSISTENCY_THRESHOLD) -> bool:
    """Whether two answers agree: fuzzy ratio (rapidfuzz, 0-100) above `threshold` after lower-casing
    and removing punctuation."""
    return fuzz.ratio(tokenize_caption(first), tokenize_caption(second)) > threshold


def is_extractive(span: str, caption: str) -> bool:
    """Whether the span is a non-empty run of the caption's words (case and punctuation aside)."""
    words = tokenize_caption(span)
    return bool(words) and f" {words} " in f" {tokenize_caption(caption)} "


def augment_captions(
    dataset: Dataset,
    generate_text: TextGenerator,
    caption_column: str = "caption",
    threshold: float = CONSISTENCY_THRESHOLD,
) -> Dataset:
    """The rows of `dataset` that yield a consistent question, with `question` and `answer` columns added.

    The answer is the extracted span; rows whose span is not extractive, whose question is empty or
    whose re-answer disagrees with the span are dropped.
    """
    if caption_column not in dataset.column_names:
        raise ValueError(
            f"caption_column must name a column of the dataset {dataset.column_names}, got {caption_column!r}"
        )
    captions = list(dataset[caption_column])
    spans = generate_text([SPAN_PROMPT.format(caption=caption) for caption in captions])
    kept = [
        index
        for index, (span, caption) in enumerate(zip(spans, captions, strict=True))
        if is_extractive(span, caption)
    ]
    questions = generate_text([QUESTION_PROMPT.format(caption=captions[i], answer=spans[i]) for i in kept])
    answers = generate_text(
        [
            ANSWER_PROMPT.format(caption=captions[i], question=question)
            for i, question in zip(kept, questions, strict=True)
        ]
    )
    consistent = [
        (index, question)
        for index, question, answer in zip(kept, questions, answers, strict=True)
        if question and round_trip_agrees(answer, spans[index], threshold)
    ]
    augmented = dataset.select([index for index, _ in consistent])
    augmented = augmented.add_column("question", [question for _, question in consistent])
    return augmented.add_column("answer", [spans[index] for index, _ in consistent])


def augment_manifest(
    manifest: str | Path,
    model: str | Path,
    output: str | Path,
    limit: int | None = None,
    max_new_tokens: int = 32,
) -> tuple[Dataset, int]:
    """`xllm augment`: question/answer examples from a captioned manifest, written to `output` (JSONL,
    media paths relative to it); returns the kept examples and the number of captions read."""
    output = Path(output).resolve()
    rows = list(load_manifest(manifest, limit=limit, decode=False, name="data"))
    keywords = [keyword for keyword in media_keywords().values() if keyword in rows[0]]

    def relative(item):
        return os.path.relpath(item["path"], output.parent)

    captioned = Dataset.from_list(
        [
            {
                "id": str(row.get("id", index)),
                "caption": example_answer(row),
                **{
                    k: [relative(i) for i in row[k]] if isinstance(row[k], list) else relative(row[k])
                    for k in keywords
                },
            }
            for index, row in enumerate(rows)
        ]
    )
    augmented = augment_captions(captioned, load_text_generator(model, max_new_tokens=max_new_tokens))
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w") as lines:
        for row in augmented:
            example = dict(row)
            example["prompt"], example["response"] = example.pop("question"), example.pop("answer")
            lines.write(json.dumps(example) + "\n")
    return augmented, len(rows)


__all__ = ["augment_captions", "augment_manifest", "load_text_generator", "round_trip_agrees"]
