"""Tests of the DisCRn evaluator (published protocol and caption baseline) and of `xllm discrn build`."""

import json

import numpy as np
import pytest
import torch
from conftest import random_image, random_video
from datasets import Dataset
from test_augmentation import save_tiny_text_model
from transformers import BertConfig, BertModel

from xllm.cli import build_parser
from xllm.evaluation import load_metric
from xllm.evaluation.discrn import PUBLISHED_PREFIX, DiscrnProtocol, discrn_task, lavis_question, media_prompt
from xllm.evaluation.discrn_builder import balance_labels, build_discrn_examples, most_similar, parse_triple
from xllm.evaluation.prompts import TextPrompt
from xllm.evaluation.runner import evaluate_examples
from xllm.evaluation.tasks import DISCRN_GENERATION
from xllm.testing import tiny_processor, tiny_qformer_tokenizer
from xllm.world.videos import encode_video


def discrn_example(first: str, label: str = "first", question: str = " which moves ?", **media) -> dict:
    """A DisCRn example of the training format: the `first` modality's medium first, then the other."""
    order = [first, *(m for m in ("image", "video") if m != first)]
    content = [{"type": modality} for modality in order] + [{"type": "text", "text": question}]
    return {
        "images": media.get("images", "a.png"),
        "videos": media.get("videos", "clip"),
        "messages": [{"role": "user", "content": content}],
        "label": label,
    }


ROW = discrn_example("video")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")


class ScriptedGenerator:
    """Answers each batch of prompts from a queue of replies; records the prompts and settings."""

    def __init__(self, *batches: list[str]):
        self.batches = list(batches)
        self.calls = []

    def __call__(self, prompts, generation):
        self.calls.append((prompts, generation))
        return self.batches.pop(0)


def test_prompt_is_prefix_placeholders_and_question_the_processor_adds_the_cues():
    prompt = media_prompt(ROW, DiscrnProtocol())
    # audio_video_describe.yaml:74 (prefix, typo and trailing space as published) and :55 (prompt).
    assert prompt.text == (
        "You are given two inputs. Select exactly one of the two by referece to its relative position (first or "
        "second, left or right) that best answers the question. <video> <image> question: which moves ? answer:"
    )
    assert prompt.text.startswith(PUBLISHED_PREFIX) and PUBLISHED_PREFIX.endswith("question. ")
    assert prompt.media == {"videos": ["clip"], "images": ["a.png"]}
    assert prompt.instruction == "a short description"  # audio_video_describe.yaml:73


def test_each_cue_is_written_once_before_its_block_by_a_processor_with_cues():
    cues = {"image": "image: ", "video": "video: "}
    processor = tiny_processor(modality_cues=cues)
    prompt = media_prompt(discrn_example("video"), DiscrnProtocol(prefix="P. "))
    ids = processor(
        text=[prompt.text], instructions=[prompt.instruction], images=[random_image(1)],
        videos=[random_video(4)], return_tensors="pt",
    )["input_ids"][0].tolist()  # fmt: skip
    for modality, cue in cues.items():
        cue_ids = processor.tokenizer(cue, add_special_tokens=False)["input_ids"]
        block_start = ids.index(processor.tokenizer.convert_tokens_to_ids(f"<{modality}>"))
        assert ids[block_start - len(cue_ids) : block_start] == cue_ids
        assert ids[block_start - 2 * len(cue_ids) : block_start - len(cue_ids)] != cue_ids


@pytest.mark.parametrize(
    "question, rewritten",
    [
        # discriminatory_reasoning_datasets.py:128, then BlipCaptionProcessor.pre_caption (blip_processors.py:49-68)
        ("which entity is louder", "which of the two options is louder?"),
        (
            "In which image is the object (a car) bigger?",
            "in which of the two options is the object a car bigger?",
        ),
        ("which audio has a dog... barking?", "which of the two options has a dog barking?"),
        ("Which entity is louder?", "which entity is louder?"),  # case-sensitive, before lower-casing
        ("Is the image brighter, or the audio", "is the object brighter, or the object?"),
    ],
)
def test_questions_are_rewritten_as_lavis_does(question, rewritten):
    assert lavis_question(question) == rewritten
    row = discrn_example("video", question=question)
    assert media_prompt(row, DiscrnProtocol()).text.endswith(f"question: {rewritten} answer:")
    assert media_prompt(row, DiscrnProtocol(rewrite_question=False)).text.endswith(
        f"question: {question} answer:"
    )


def test_published_pairs_are_presented_in_their_fixed_order_with_the_label_flipped():
    row = {
        "audio": "a.wav", "videos": "clip", "label": "first",
        "messages": [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "q"}]}],
    }  # fmt: skip
    prompt = media_prompt(row, DiscrnProtocol(prefix=""))
    assert prompt.text == "<audio> <video> question: q? answer:"  # audio_video_describe.yaml:63
    task = discrn_task()
    assert task.references(row) == "second"
    assert task.score([row], ["the second"])["accuracy"] == 1.0
    unordered = DiscrnProtocol(prefix="", modality_order=())
    assert media_prompt(row, unordered).text == "<video> <audio> question: q? answer:"


def test_discrn_scores_answers_by_position_or_modality_with_published_decoding():
    rows = [ROW, dict(ROW, label="second")]
    generator = ScriptedGenerator(["the video", "first"])
    result = evaluate_examples(discrn_task(), rows, generator)
    # discrn/audio_video_describe.yaml:150-153; length and repetition penalties from the model code.
    assert generator.calls[0][1] == {
        "num_beams": 5, "max_new_tokens": 10, "min_new_tokens": 1, "length_penalty": -1.0,
        "repetition_penalty": 1.5, "do_sample": False,
    }  # fmt: skip
    assert result.metrics == {"accuracy": 0.5, "invalid_rate": 0.0, "lavis_accuracy": 0.5}


@pytest.mark.parametrize(
    "answer, label, modalities, strict, lavis",
    [
        ("The first one.", "first", ["image", "point_cloud"], 1.0, 1.0),
        ("the 3d model", "second", ["image", "point_cloud"], 0.0, 1.0),  # LAVIS: "3d" is a word of it
        ("first, not second", "first", ["audio", "video"], 0.0, 1.0),  # LAVIS takes the first accepted word
        ("a", "first", ["audio", "video"], 1.0, 0.0),  # the VQA normalisation drops "a" as an article
        ("(a)", "first", ["audio", "video"], 1.0, 0.0),  # "(a)" normalises to "a", then to nothing
        ("(b)", "second", ["audio", "video"], 1.0, 1.0),  # "(b)" normalises to "b", accepted
        ("sound", "first", ["audio", "video"], 1.0, 1.0),
    ],
)
def test_lavis_scoring_is_reported_beside_the_strict_one(answer, label, modalities, strict, lavis):
    scores = load_metric("discrn_accuracy").compute(
        predictions=[answer], references=[label], modalities=[modalities], lavis_scoring=True
    )
    assert (scores["accuracy"], scores["lavis_accuracy"]) == (strict, lavis)


def test_caption_baseline_answers_from_the_models_own_captions_without_media():
    generator = ScriptedGenerator(["a red ball rolls", "a red square"], ["first"])
    protocol = DiscrnProtocol(prefix="P. ", caption_generation={"max_new_tokens": 4})
    result = evaluate_examples(discrn_task(caption_baseline=True, protocol=protocol), [ROW], generator)
    (caption_prompts, caption_settings), (answer_prompts, answer_settings) = generator.calls
    assert [prompt.conversation[0]["content"][0] for prompt in caption_prompts] == [
        {"type": "video", "video": "clip"},
        {"type": "image", "image": "a.png"},
    ]
    assert caption_settings == {"max_new_tokens": 4}
    # blip2_vicuna_xinstruct.py:1160: prefix, " video: " caption, " image: " caption, " " prompt.
    assert (
        answer_prompts
        == [
            TextPrompt(
                "P.  video: a red ball rolls image: a red square question: which moves ? answer:",
                {},
                "a short description",
                "video: a red ball rolls image: a red square which moves ?",  # for a processor with a prompt format
            )
        ]
    )
    assert answer_settings == DISCRN_GENERATION
    assert result.metrics["accuracy"] == 1.0


def test_example_without_two_media_of_different_modalities_is_rejected():
    with pytest.raises(ValueError, match="two media"):
        media_prompt({**ROW, "videos": None, "messages": [{"role": "user", "content": [{"type": "image"}]}]},
                     DiscrnProtocol())  # fmt: skip


@pytest.mark.parametrize("baseline", [[], ["--caption-baseline"]])
def test_evaluate_discrn_runs_on_a_tiny_model(saved_tiny_dir, tmp_path, baseline, monkeypatch):
    monkeypatch.setattr("xllm.evaluation.discrn.CAPTIONING_GENERATION", {"max_new_tokens": 2})
    encode_video(random_video(4, size=16).transpose(0, 3, 1, 2).copy(), tmp_path / "clip.mp4")
    random_image(9, size=16).save(tmp_path / "a.png")
    rows = [discrn_example(first, videos="clip.mp4") for first in ("image", "video")]
    (tmp_path / "discrn.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = build_parser().parse_args(
        ["evaluate", "--task", "discrn", "--model", str(saved_tiny_dir), "--data", str(tmp_path / "discrn.jsonl"),
         "--output", str(tmp_path / "out"), "--num-beams", "1", "--max-new-tokens", "2", *baseline]
    )  # fmt: skip
    assert args.run(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["items"] == 2 and set(report["metrics"]) == {"accuracy", "invalid_rate", "lavis_accuracy"}


WORDS = "red blue green circle square star ball box sound loud quiet".split()


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A deterministic sentence embedding: word counts over a fixed vocabulary."""
    return np.array([[text.lower().split().count(word) + 1e-3 for word in WORDS] for text in texts])


def captioned(ids: list[str], captions: list[str]) -> Dataset:
    return Dataset.from_dict({"id": ids, "caption": captions, "media": [f"{i}.png" for i in ids]})


def test_each_item_is_paired_with_the_most_similar_non_identical_caption():
    first = ["a red ball", "a blue box", "a green star"]
    second = ["a red ball", "a green star sound", "a blue box sound", "a red ball sound"]
    assert most_similar(first, second, bag_of_words) == [3, 2, 1]


def builder_generator(answers: list[str]):
    """Properties, then question triples answering `answers`, then the round-trip answers."""

    def generate(prompts):
        if prompts[0].startswith("List the properties"):
            return ["colour, shape"] * len(prompts)
        if prompts[0].startswith("Write a question"):
            return [
                f" Which is louder?\nAnswer: {answer}\nExplanation: because.\n\nFirst: x"
                for answer in answers
            ]
        return list(round_trip.pop(0))

    round_trip = []
    generate.round_trip = round_trip
    return generate


def test_builder_keeps_round_trip_consistent_examples_with_balanced_labels():
    images = captioned(
        ["i0", "i1", "i2", "i3"], ["a red ball", "a blue box", "a green star", "a blue box square"]
    )
    sounds = captioned(
        ["s0", "s1", "s2"], ["a loud red ball sound", "a quiet blue box sound", "a green star sound"]
    )
    generate = builder_generator(["first"] * 4)
    generate.round_trip.append(["First.", "second", "first", "first"])  # the second example disagrees
    examples = build_discrn_examples(images, sounds, ("image", "audio"), generate, bag_of_words)
    assert examples["label"] == ["first", "second", "first"]
    assert examples.column_names == [
        "first_id", "first_modality", "first_caption", "first_properties", "first_media",
        "second_id", "second_modality", "second_caption", "second_properties", "second_media",
        "question", "label", "explanation",
    ]  # fmt: skip
    kept = examples.to_list()
    assert (kept[0]["first_id"], kept[0]["second_id"]) == ("i0", "s0")
    # The second kept example was swapped to balance the labels: the sound comes first.
    assert (kept[1]["first_id"], kept[1]["second_id"], kept[1]["first_modality"]) == ("s2", "i2", "audio")
    assert (kept[2]["first_id"], kept[2]["second_id"]) == ("i3", "s1")
    assert kept[1]["first_caption"] == "a green star sound" and kept[1]["second_media"] == "i2.png"
    assert kept[0]["question"] == "Which is louder?" and kept[0]["explanation"] == "because."
    assert kept[0]["first_properties"] == ["colour", "shape"]


def test_triples_without_a_position_answer_are_dropped():
    assert parse_triple(" Which?\nAnswer: First.\nExplanation: it is.") == ("Which?", "first", "it is.")
    assert parse_triple(" Which?\nAnswer: the red one\nExplanation: it is.") is None
    assert parse_triple(" Which?\nAnswer: second") is None


def test_balancing_makes_half_the_labels_first():
    pairs = [{"first_id": str(i), "second_id": f"o{i}", "label": "first"} for i in range(6)]
    labels = [pair["label"] for pair in balance_labels(pairs)]
    assert labels.count("first") == 3 and labels[:2] == ["first", "second"]


def test_same_modality_twice_is_rejected():
    data = captioned(["a"], ["a red ball"])
    with pytest.raises(ValueError, match="modalities"):
        build_discrn_examples(data, data, ("image", "image"), builder_generator([]), bag_of_words)


def test_discrn_build_command_runs_offline_with_tiny_local_models(tmp_path):
    text_model = save_tiny_text_model(tmp_path / "text_model", "causal")
    torch.manual_seed(0)
    tokenizer = tiny_qformer_tokenizer()
    embedder = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32))  # fmt: skip
    embedder.save_pretrained(tmp_path / "embedder")
    tokenizer.save_pretrained(tmp_path / "embedder")
    for name, captions in (("images", ["a red circle", "a blue square"]),
                           ("videos", ["a red circle moving up", "a star moving down"])):  # fmt: skip
        rows = [{"id": f"{name}{i}", name: f"{name}{i}.x", "response": c} for i, c in enumerate(captions)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = build_parser().parse_args(
        ["discrn", "build", "--first", str(tmp_path / "images.jsonl"), "--second", str(tmp_path / "videos.jsonl"),
         "--model", str(text_model), "--embedding-model", str(tmp_path / "embedder"),
         "--output", str(tmp_path / "discrn"), "--max-new-tokens", "4"]
    )  # fmt: skip
    assert args.run(args) == 0
    assert (tmp_path / "discrn" / "discrn.jsonl").is_file()
    assert (tmp_path / "discrn" / "dataset" / "dataset_info.json").is_file()


@pytest.mark.parametrize("first, second", [("images", "point_clouds"), ("audio", "videos")])
def test_the_papers_pairs_are_built_and_evaluated_from_exported_manifests(
    saved_tiny_dir, world_data, tmp_path, monkeypatch, first, second
):
    generate = builder_generator(["first"] * 4)
    generate.round_trip.append(["first"] * 4)
    monkeypatch.setattr(
        "xllm.evaluation.discrn_builder.load_text_generator", lambda *args, **kwargs: generate
    )
    monkeypatch.setattr("xllm.evaluation.discrn_builder.load_sentence_embedder", lambda *args: bag_of_words)
    args = build_parser().parse_args(
        ["discrn", "build", "--first", str(world_data / f"{first}.jsonl"), "--second", str(world_data / f"{second}.jsonl"),
         "--model", "scripted", "--output", str(tmp_path / "built")]
    )  # fmt: skip
    assert args.run(args) == 0
    built = [json.loads(line) for line in (tmp_path / "built" / "discrn.jsonl").read_text().splitlines()]
    assert len(built) == 4 and [row["label"] for row in built] == ["first", "second", "first", "second"]
    assert all({first, second} <= set(row) for row in built)
    pair = {"images": "image_point_cloud", "audio": "audio_video"}[first]
    # The built manifest names the sources' media, outside its own folder: the user allows it.
    for manifest, allow in ((tmp_path / "built" / "discrn.jsonl", ["--allow-outside-root"]),
                            (world_data / "test" / f"discrn_{pair}.jsonl", [])):  # fmt: skip
        output = tmp_path / "evaluation" / manifest.parent.name
        args = build_parser().parse_args(
            ["evaluate", "--task", "discrn", "--model", str(saved_tiny_dir), "--data", str(manifest),
             "--output", str(output), "--num-beams", "1", "--max-new-tokens", "2", *allow]
        )  # fmt: skip
        assert args.run(args) == 0
        report = json.loads((output / "report.json").read_text())
        assert report["items"] == len(manifest.read_text().splitlines())
        assert set(report["metrics"]) == {"accuracy", "invalid_rate", "lavis_accuracy"}
