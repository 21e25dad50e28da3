"""How the demo measures what the method learned, on the test split (held-out combinations).

Captioning: CIDEr, and accuracy of every attribute parsed from the generated caption. Speech:
word error rate. Cross-modal (DisCRn-style): accuracy of "which of the two ...?" over pairs of
two modalities that were never trained together. Every accuracy comes with a 95% Wilson interval,
because the test sets are small.
"""

import math

import torch

from ..evaluation import load_metric
from ..evaluation.generation import generate_answers
from ..evaluation.prompts import ChatPrompt
from ..manifests import example_conversation
from ..world.vocabulary import ATTRIBUTES


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound for small n and extreme p)."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion(successes: int, total: int) -> dict:
    low, high = wilson_interval(successes, total)
    return {"accuracy": successes / max(1, total), "low": low, "high": high, "n": total}


def greedy_answers(
    model, processor, examples: list[dict], max_new_tokens: int, desc: str = "generate"
) -> list[str]:
    """Greedy answers to one-turn examples of the training format (left padding, batches of 32)."""
    prompts = [ChatPrompt(example_conversation(example)) for example in examples]
    generation = {"max_new_tokens": max_new_tokens, "do_sample": False}
    return generate_answers(model, processor, prompts, generation, batch_size=32, desc=desc)


def parsed_attributes(caption: str, modality: str) -> dict[str, str | None]:
    """Each attribute's value as named in a caption: the one value of it the caption contains."""
    words = set(caption.split())
    parsed = {}
    for name, values in ATTRIBUTES[modality].items():
        present = [value for value in values if value in words]
        parsed[name] = present[0] if len(present) == 1 else None
    return parsed


def captioning_scores(predictions: list[str], items: list[dict], modality: str) -> dict:
    """CIDEr against the true caption and per-attribute accuracy parsed from the prediction."""
    cider = load_metric("cider").compute(
        predictions=predictions, references=[[item["caption"]] for item in items]
    )
    attributes = {}
    for name in ATTRIBUTES[modality]:
        correct = sum(
            parsed_attributes(prediction, modality)[name] == item["attributes"][name]
            for prediction, item in zip(predictions, items, strict=True)
        )
        attributes[name] = proportion(correct, len(items))
    return {"cider": cider["cider"], "attributes": attributes}


def speech_scores(predictions: list[str], items: list[dict]) -> dict:
    wer = load_metric("wer").compute(
        predictions=predictions, references=[item["transcript"] for item in items]
    )
    exact = sum(p == item["transcript"] for p, item in zip(predictions, items, strict=True))
    return {"wer": wer["wer"], "exact_transcripts": proportion(exact, len(items))}


@torch.no_grad()
def cif_token_counts(model, processor, items: list[dict], batch_size: int = 32) -> dict:
    """Where speech WER can be lost between encoder and LLM: the tokens CIF fires for each utterance
    against its transcript's LLM tokens (the count CIF was trained to fire). A wrong count shifts
    every later word."""
    fired = []
    for start in range(0, len(items), batch_size):
        inputs = processor.prepare_media(
            "speech", [item["media"] for item in items[start : start + batch_size]]
        )
        features = model.model.get_speech_features(
            inputs["speech_features"], inputs.get("speech_attention_mask")
        )
        fired += features.token_lengths.tolist()
    expected = [
        len(processor.tokenizer(item["transcript"], add_special_tokens=False)["input_ids"]) for item in items
    ]
    differences = [f - e for f, e in zip(fired, expected, strict=True)]
    exact = sum(difference == 0 for difference in differences)
    return {
        "exact_count": proportion(exact, len(items)),
        "mean_difference": sum(differences) / max(1, len(items)),
        "mean_absolute_difference": sum(map(abs, differences)) / max(1, len(items)),
    }


def discrn_scores(predictions: list[str], pairs: list[dict]) -> dict:
    """Accuracy with invalid answers (naming no option) counted wrong, and their share."""
    metric = load_metric("discrn_accuracy")
    result = metric.compute(
        predictions=predictions,
        references=[pair["answer"] for pair in pairs],
        modalities=[list(pair["modalities"]) for pair in pairs],
    )
    correct = round(result["accuracy"] * len(pairs))
    return {**proportion(correct, len(pairs)), "invalid_rate": result["invalid_rate"]}
