"""Tests of query data augmentation: the answer-span / question / re-answer round trip and its filters."""

import json

import pytest
import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

from xllm.cli import build_parser
from xllm.evaluation.query_augmentation import augment_captions, is_extractive, round_trip_agrees
from xllm.testing import tiny_tokenizer


def save_tiny_text_model(folder, kind: str):
    """A random one-layer causal (GPT-2) or seq2seq (T5) model with the tiny word-level tokenizer."""
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    ids = dict(vocab_size=len(tokenizer), pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if kind == "causal":
        model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=1024, **ids))
    else:
        config = T5Config(
            d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2, decoder_start_token_id=0, **ids
        )
        model = T5ForConditionalGeneration(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def scripted(replies: dict[str, list[str]]):
    """A text generator answering prompts by their first line's keyword, from per-keyword reply queues."""

    def generate(prompts):
        return [replies[keyword_of(prompt)].pop(0) for prompt in prompts]

    return generate


def keyword_of(prompt: str) -> str:
    if "Copy a short phrase" in prompt:
        return "span"
    return "question" if "Write a question" in prompt else "answer"


CAPTIONS = ["A red circle on the left.", "A small blue square.", "A green star moving up."]


def test_consistent_extractive_pairs_are_kept_with_their_span_as_answer():
    generate = scripted(
        {
            "span": ["red circle", "blue", "green star"],
            "question": ["What is on the left?", "What colour is the square?", "What moves up?"],
            "answer": ["Red circle.", "blue", "the green star"],
        }
    )
    augmented = augment_captions(Dataset.from_dict({"caption": CAPTIONS, "id": [0, 1, 2]}), generate)
    assert augmented["id"] == [0, 1]
    assert augmented["question"] == ["What is on the left?", "What colour is the square?"]
    assert augmented["answer"] == ["red circle", "blue"]


def test_spans_not_in_the_caption_are_dropped_before_asking_questions():
    generate = scripted(
        {"span": ["purple", "blue", "big star"], "question": ["What colour?"], "answer": ["blue"]}
    )
    augmented = augment_captions(Dataset.from_dict({"caption": CAPTIONS}), generate)
    assert augmented["caption"] == [CAPTIONS[1]]


def test_empty_questions_are_dropped():
    generate = scripted(
        {"span": ["red", "blue", "green"], "question": ["", "Which?", ""], "answer": ["red", "blue", "green"]}
    )
    assert augment_captions(Dataset.from_dict({"caption": CAPTIONS}), generate)["answer"] == ["blue"]


def test_round_trip_needs_fuzzy_ratio_above_ninety():
    assert round_trip_agrees("The red circle!", "the red circle")
    assert round_trip_agrees("red circles", "red circle")  # ratio 95.2
    assert not round_trip_agrees("red car", "red circle")
    assert not round_trip_agrees("blue", "red")


def test_extractive_means_a_run_of_whole_caption_words():
    assert is_extractive("Red circle", "A red circle on the left.")
    assert not is_extractive("red circ", "A red circle on the left.")
    assert not is_extractive("circle red", "A red circle on the left.")
    assert not is_extractive("", "A red circle.")


def test_unknown_caption_column_is_rejected():
    with pytest.raises(ValueError, match="caption_column"):
        augment_captions(Dataset.from_dict({"text": CAPTIONS}), scripted({}))


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_augment_command_runs_offline_with_a_tiny_local_model(tmp_path, kind):
    model_dir = save_tiny_text_model(tmp_path / "model", kind)
    manifest = tmp_path / "data" / "captions.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(
        "".join(json.dumps({"images": f"{i}.png", "response": c}) + "\n" for i, c in enumerate(CAPTIONS))
    )
    parser = build_parser()
    output = tmp_path / "out" / "qa.jsonl"
    args = parser.parse_args(
        [
            "augment",
            "--data",
            str(manifest),
            "--model",
            str(model_dir),
            "--output",
            str(output),
            "--max-new-tokens",
            "4",
        ]
    )
    assert args.run(args) == 0
    assert output.is_file()
    for row in map(json.loads, output.read_text().splitlines()):
        assert set(row) >= {"images", "caption", "prompt", "response"}
        assert (output.parent / row["images"]).resolve() == (
            manifest.parent / row["images"].split("/")[-1]
        ).resolve()
