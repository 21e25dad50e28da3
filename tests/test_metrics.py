"""Tests of the offline `evaluate` metrics shipped in xllm/evaluation/metrics."""

import random

import jiwer
import pytest

from xllm.evaluation.caption_tokenizer import prepare_captions, tokenize_caption
from xllm.evaluation.metric_loading import METRICS_DIRECTORY, available_metrics, load_metric

SHIPPED_METRICS = [
    "bleu",
    "cer",
    "cider",
    "classification_accuracy",
    "discrn_accuracy",
    "rouge_l",
    "vqa_accuracy",
    "wer",
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")


@pytest.fixture(scope="module")
def metrics():
    return {name: load_metric(name, keep_in_memory=True) for name in SHIPPED_METRICS}


def random_corpus(seed: int, items: int = 25, min_words: int = 1, vocabulary_size: int = 10):
    """Pre-tokenised captions over a small vocabulary, so that n-grams are shared across items."""
    rng = random.Random(seed)
    vocabulary = "a red blue square circle moves left right small big".split()[:vocabulary_size]

    def caption():
        return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(min_words, 12)))

    predictions = [caption() for _ in range(items)]
    references = [[caption() for _ in range(rng.randint(1, 5))] for _ in range(items)]
    return predictions, references


def coco_inputs(predictions, references):
    """The dictionaries pycocoevalcap's scorers take: references and a one-caption list per id."""
    return {i: refs for i, refs in enumerate(references)}, {i: [pred] for i, pred in enumerate(predictions)}


# Loading


def test_every_shipped_metric_is_listed():
    assert available_metrics() == SHIPPED_METRICS


@pytest.mark.parametrize("name", SHIPPED_METRICS)
def test_metric_loads_by_folder_path_with_evaluate_offline(name):
    import evaluate

    metric = evaluate.load(str(METRICS_DIRECTORY / name), keep_in_memory=True)
    assert isinstance(metric, evaluate.Metric)
    assert metric.info.citation and metric.info.description and metric.info.features


def test_unknown_metric_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="cider") as error:
        load_metric("meteor")
    assert "meteor" in str(error.value)


# Caption tokenizer


@pytest.mark.parametrize(
    "caption, tokens",
    [
        ("A man, riding a horse.", "a man riding a horse"),
        ("The dog's toy isn't red!", "the dog 's toy is n't red"),
        ('A black-and-white photo of 3.5 (three) "cats"...', "a black-and-white photo of 3.5 three cats"),
        ("Dogs' bowls -- 50% off; yes: ok?", "dogs bowls 50 % off yes ok"),
        ("  Two\nlines ", "two lines"),
        ("", ""),
    ],
)
def test_caption_tokenizer_lowercases_and_drops_ptb_punctuation(caption, tokens):
    assert tokenize_caption(caption) == tokens


def test_caption_corpus_with_mismatched_lengths_is_rejected():
    with pytest.raises(ValueError, match="same length"):
        prepare_captions(["a"], [["a"], ["b"]], pretokenized=True)


def test_caption_item_without_references_is_rejected():
    with pytest.raises(ValueError, match="item 1 has none"):
        prepare_captions(["a", "b"], [["a"], []], pretokenized=True)


# Caption metrics against pycocoevalcap


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cider_equals_pycocoevalcap_cider_scorer(metrics, seed):
    cider_scorer = pytest.importorskip("pycocoevalcap.cider.cider_scorer")
    predictions, references = random_corpus(seed)
    scorer = cider_scorer.CiderScorer(n=4, sigma=6.0)
    for prediction, item_references in zip(predictions, references, strict=True):
        scorer += (prediction, item_references)
    expected_score, expected_per_item = scorer.compute_score()

    result = metrics["cider"].compute(predictions=predictions, references=references, pretokenized=True)

    assert result["cider"] == pytest.approx(expected_score, abs=1e-9)
    assert result["cider_per_item"] == pytest.approx(list(expected_per_item), abs=1e-9)


def test_cider_tokenises_raw_captions_with_the_caption_tokenizer(metrics):
    predictions = ["A red square.", "The blue circle moves!", "Small, big"]
    references = [["a red square", "A small red square."], ["a blue circle moving"], ["Big; small."]]
    raw = metrics["cider"].compute(predictions=predictions, references=references)
    tokenized = metrics["cider"].compute(
        predictions=[tokenize_caption(caption) for caption in predictions],
        references=[[tokenize_caption(caption) for caption in item] for item in references],
        pretokenized=True,
    )
    assert raw["cider"] > 0
    assert raw["cider_per_item"] == pytest.approx(tokenized["cider_per_item"], abs=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_bleu_equals_pycocoevalcap_bleu(metrics, seed):
    bleu = pytest.importorskip("pycocoevalcap.bleu.bleu")
    # A four-word vocabulary makes 4-gram matches certain: with none, the reference adds an
    # epsilon and reports about 1e-5 where plain corpus BLEU is 0 (tested below).
    predictions, references = random_corpus(seed, min_words=4, vocabulary_size=4)
    expected, _ = bleu.Bleu(4).compute_score(*coco_inputs(predictions, references), verbose=0)

    result = metrics["bleu"].compute(predictions=predictions, references=references, pretokenized=True)

    assert [result[f"bleu_{n}"] for n in range(1, 5)] == pytest.approx(expected, abs=1e-9)


def test_bleu_applies_the_brevity_penalty_and_is_zero_without_four_gram_matches(metrics):
    result = metrics["bleu"].compute(predictions=["red square"], references=[["a red square moves"]])
    assert result["bleu_1"] == pytest.approx(2.718281828459045 ** (1 - 4 / 2), abs=1e-12)
    assert result["length_ratio"] == pytest.approx(0.5)
    assert result["bleu_3"] == 0.0 and result["bleu_4"] == 0.0


@pytest.mark.parametrize("seed", [5, 6])
def test_rouge_l_equals_pycocoevalcap_rouge(metrics, seed):
    rouge = pytest.importorskip("pycocoevalcap.rouge.rouge")
    predictions, references = random_corpus(seed)
    expected_score, expected_per_item = rouge.Rouge().compute_score(*coco_inputs(predictions, references))

    result = metrics["rouge_l"].compute(predictions=predictions, references=references, pretokenized=True)

    assert result["rouge_l"] == pytest.approx(expected_score, abs=1e-12)
    assert result["rouge_l_per_item"] == pytest.approx(list(expected_per_item), abs=1e-12)


# Speech recognition


def test_wer_is_corpus_word_errors_over_reference_words(metrics):
    predictions = ["a red square moves", "blue circle"]
    references = ["a red square", "the blue circle turns"]
    result = metrics["wer"].compute(predictions=predictions, references=references)
    assert result["wer"] == pytest.approx(3 / 7)
    assert result["wer"] == pytest.approx(jiwer.wer(references, predictions))


def test_cer_is_corpus_character_errors_over_reference_characters(metrics):
    result = metrics["cer"].compute(predictions=["a red squire", "cat"], references=["a red square", "cats"])
    assert result["cer"] == pytest.approx(2 / 16)


# VQA accuracy: hand-checked against the official algorithm


@pytest.mark.parametrize(
    "prediction, answers, accuracy",
    [
        ("2", ["2"] * 1 + ["3"] * 9, 0.3),  # 9 subsets with 1 match (1/3), 1 subset with 0
        ("2", ["2"] * 2 + ["3"] * 8, 0.6),  # 2 subsets with 1 match, 8 with 2: (2/3 + 16/3) / 10
        ("2", ["2"] * 3 + ["3"] * 7, 0.9),  # 3 subsets with 2 matches, 7 with 3: (2 + 7) / 10
        ("2", ["2"] * 4 + ["3"] * 6, 1.0),
        ("4", ["2"] * 4 + ["3"] * 6, 0.0),
        ("Two.", ["2"] * 10, 1.0),  # number word and period
        ("The cat", ["a cat", "cat", "an cat"] + ["dog"] * 7, 0.9),  # articles
        ("dont know", ["don't know"] * 10, 1.0),  # contraction restored
        ("couldnt've", ["couldn't've"] * 10, 1.0),
        ("Yes!", ["yes"] * 10, 1.0),
        ("x-ray", ["x ray"] * 10, 1.0),  # hyphen not touching a space becomes a space
        ("2.5", ["25"] * 10, 0.0),  # a period before a digit stays
        ("1,000", ["1000"] * 10, 1.0),  # digit-comma-digit: punctuation deleted
        ("red", ["red"], 1.0),  # one reference: exact match
        ("blue", ["red"], 0.0),
    ],
)
def test_vqa_accuracy_matches_hand_checked_cases(metrics, prediction, answers, accuracy):
    result = metrics["vqa_accuracy"].compute(predictions=[prediction], references=[answers])
    assert result["vqa_accuracy"] == pytest.approx(accuracy, abs=1e-12)


def test_vqa_accuracy_is_the_mean_over_questions(metrics):
    result = metrics["vqa_accuracy"].compute(
        predictions=["2", "yes"], references=[["2"] * 2 + ["3"] * 8, ["no"] * 10]
    )
    assert result["vqa_accuracy_per_item"] == pytest.approx([0.6, 0.0])
    assert result["vqa_accuracy"] == pytest.approx(0.3)


# DisCRn accuracy

FIRST_FORMS = [
    "first",
    "1st",
    "left",
    "a",
    "(a)",
    "First.",
    "the first one",
    "The left input",
    "option a",
    "(A)",
]
SECOND_FORMS = [
    "second",
    "2nd",
    "right",
    "b",
    "(b)",
    "Second!",
    "the second one",
    "the right",
    "option B",
    "2nd one",
]
MODALITY_FORMS = {
    "image": ["image", "picture", "photo", "The image.", "the picture"],
    "point_cloud": ["3d", "3D", "point cloud", "shape", "object", "the 3d", "The object."],
    "audio": ["audio", "sound", "the sound"],
    "video": ["video", "clip", "the clip"],
}


def discrn(metrics, predictions, references, modalities):
    return metrics["discrn_accuracy"].compute(
        predictions=predictions, references=references, modalities=modalities
    )


@pytest.mark.parametrize("label, forms", [("first", FIRST_FORMS), ("second", SECOND_FORMS)])
def test_discrn_accepts_every_position_form(metrics, label, forms):
    pairs = [["image", "point_cloud"]] * len(forms)
    assert discrn(metrics, forms, [label] * len(forms), pairs) == {"accuracy": 1.0, "invalid_rate": 0.0}
    other = "second" if label == "first" else "first"
    assert discrn(metrics, forms, [other] * len(forms), pairs) == {"accuracy": 0.0, "invalid_rate": 0.0}


@pytest.mark.parametrize("modality, forms", list(MODALITY_FORMS.items()))
def test_discrn_maps_modality_names_and_synonyms_to_their_option(metrics, modality, forms):
    partner = "audio" if modality in ("image", "point_cloud") else "image"
    as_first = discrn(metrics, forms, ["first"] * len(forms), [[modality, partner]] * len(forms))
    as_second = discrn(metrics, forms, ["second"] * len(forms), [[partner, modality]] * len(forms))
    assert as_first == {"accuracy": 1.0, "invalid_rate": 0.0}
    assert as_second == {"accuracy": 1.0, "invalid_rate": 0.0}


@pytest.mark.parametrize(
    "answer",
    ["third", "yes", "", "the", "both", "first and second", "the first image is better", "video", "an", "c"],
)
def test_discrn_counts_answers_naming_no_single_option_as_invalid_and_wrong(metrics, answer):
    result = discrn(metrics, [answer], ["first"], [["image", "point_cloud"]])
    assert result == {"accuracy": 0.0, "invalid_rate": 1.0}


def test_discrn_modality_name_is_ambiguous_when_both_inputs_share_it(metrics):
    result = discrn(metrics, ["image", "first"], ["first", "first"], [["image", "image"]] * 2)
    assert result == {"accuracy": 0.5, "invalid_rate": 0.5}


def test_discrn_reports_accuracy_and_invalid_rate_over_the_corpus(metrics):
    result = discrn(
        metrics,
        ["first", "the sound", "maybe", "(b)"],
        ["first", "second", "first", "first"],
        [["image", "point_cloud"], ["video", "audio"], ["image", "point_cloud"], ["audio", "video"]],
    )
    assert result == {"accuracy": 0.5, "invalid_rate": 0.25}


def test_discrn_rejects_unknown_modalities_and_labels(metrics):
    with pytest.raises(ValueError, match="modalities"):
        discrn(metrics, ["first"], ["first"], [["image", "smell"]])
    with pytest.raises(ValueError, match="references"):
        discrn(metrics, ["first"], ["maybe"], [["image", "audio"]])


# Classification accuracy

CLASSES = ["cube", "red cube", "sphere", "cone"]


def classify(metrics, predictions, references, class_names=CLASSES):
    return metrics["classification_accuracy"].compute(
        predictions=predictions, references=references, class_names=class_names
    )


def test_classification_prefers_an_exact_normalised_match(metrics):
    assert classify(metrics, ["Red cube."], ["red cube"]) == {"accuracy": 1.0, "invalid_rate": 0.0}


def test_classification_finds_the_single_class_name_contained_in_the_text(metrics):
    result = classify(metrics, ["It looks like a sphere to me", "this is a cone"], ["sphere", "sphere"])
    assert result == {"accuracy": 0.5, "invalid_rate": 0.0}


def test_classification_counts_ambiguous_or_unmatched_text_as_wrong(metrics):
    result = classify(
        metrics, ["a cube next to a sphere", "a big red cube", "a pyramid", "spheres"], ["cube"] * 4
    )
    assert result == {"accuracy": 0.0, "invalid_rate": 1.0}


def test_classification_defaults_to_the_distinct_references_as_classes(metrics):
    result = classify(metrics, ["a cone", "a cube"], ["cone", "cube"], class_names=None)
    assert result == {"accuracy": 1.0, "invalid_rate": 0.0}


def test_classification_rejects_references_outside_the_class_names(metrics):
    with pytest.raises(ValueError, match="class_names"):
        classify(metrics, ["a torus"], ["torus"])
