"""Stage 0, the stand-in for a pretrained LLM: a word-level tokenizer and a tiny Llama trained on
the world's text, then frozen.

The LLM learns, from text alone, the three things the multimodal model will ask of it, with a
caption standing where the media tokens will later be:
    copy        "Question: <caption> describe the image\\n Answer: <caption>"
    answer      "Question: <caption> what colour is the object ?\\n Answer: red"
    compare     "Question: which of the two is red ? first : <caption> second : <caption>\\n Answer: first"
What two prototypes measured (shared/notes/demo-prototype.md) is built in: loss on the answer
only, the comparison answer up-weighted, the question before the options, and noise plus word
drop on the caption embeddings, so that the LLM reads captions that are only approximately word
embeddings, as interface outputs will be.
"""

from dataclasses import dataclass

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ..testing import word_level_tokenizer
from ..world.vocabulary import (
    ATTRIBUTE_QUESTIONS,
    CAPTION_INSTRUCTIONS,
    random_descriptions,
    world_vocabulary,
)
from .settings import StepBudget

TEMPLATE_WORDS = ["question", "answer", ":"]
COMPARISON_ANSWER_WEIGHT = 10.0
WORD_DROP = 0.1
MAX_NOISE = 0.5  # noise sigma, as a fraction of the embedding RMS


def world_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the world's closed vocabulary (lower-cased, split on spaces and
    punctuation), with the modality placeholders as special tokens."""
    return word_level_tokenizer(
        TEMPLATE_WORDS + list(world_vocabulary()), lowercase=True, model_max_length=256
    )


@dataclass
class TextExample:
    """One training sequence as words: `context` marks caption words (noised), `weights` the loss."""

    words: list[str]
    context: list[bool]
    weights: list[float]


def _example(parts: list[tuple[str, bool]], answer: str, answer_weight: float) -> TextExample:
    """`parts` are (text, is_context) pieces of the question; the answer follows "answer :"."""
    words, context = ["question", ":"], [False, False]
    for text, is_context in parts:
        piece = text.split()
        words += piece
        context += [is_context] * len(piece)
    words += ["answer", ":"]
    context += [False, False]
    weights = [0.0] * len(words)
    answer_words = answer.split() + ["</s>"]
    words += answer_words
    context += [False] * len(answer_words)
    weights += [answer_weight] * (len(answer_words) - 1) + [1.0]
    return TextExample(words, context, weights)


def language_examples(world: dict, comparisons, seed: int) -> list[TextExample]:
    """Copy, attribute-answer and comparison sequences. Captions are drawn over every attribute
    combination (as many per modality as its train split has items): trained on train-split
    captions only, the LLM learns that a red star is never said and suppresses it however clearly
    the interface shows one. Speech transcripts come from the speech train split."""
    rng = np.random.default_rng([seed, 3])
    examples = []
    for modality, splits in world.items():
        if modality not in CAPTION_INSTRUCTIONS or modality == "speech" or "train" not in splits:
            continue
        for row in random_descriptions(modality, len(splits["train"]), rng):  # each copied or asked about
            if rng.random() < 0.5:
                instructions = CAPTION_INSTRUCTIONS[modality]
                instruction = instructions[rng.integers(len(instructions))]
                examples.append(_example([(row["caption"], True), (instruction, False)], row["caption"], 1.0))
                continue
            attribute = list(ATTRIBUTE_QUESTIONS[modality])[rng.integers(len(ATTRIBUTE_QUESTIONS[modality]))]
            questions = ATTRIBUTE_QUESTIONS[modality][attribute]
            question = questions[rng.integers(len(questions))]
            examples.append(
                _example([(row["caption"], True), (question, False)], row["attributes"][attribute], 1.0)
            )
    if "speech" in world and "train" in world["speech"]:
        for row in world["speech"]["train"].select_columns(["transcript"]).to_list():
            instruction = CAPTION_INSTRUCTIONS["speech"][rng.integers(len(CAPTION_INSTRUCTIONS["speech"]))]
            examples.append(
                _example([(row["transcript"], True), (instruction, False)], row["transcript"], 1.0)
            )
    for row in comparisons:
        parts = [
            (row["question"], False),
            ("first :", False),
            (row["first_caption"], True),
            ("second :", False),
            (row["second_caption"], True),
        ]
        examples.append(_example(parts, row["answer"], COMPARISON_ANSWER_WEIGHT))
    return [examples[i] for i in rng.permutation(len(examples))]


def tiny_llama_config(vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )


def _batch(examples: list[TextExample], tokenizer) -> dict[str, torch.Tensor]:
    longest = max(len(e.words) for e in examples)
    ids = torch.zeros(len(examples), longest, dtype=torch.long)
    context = torch.zeros(len(examples), longest, dtype=torch.bool)
    weights = torch.zeros(len(examples), longest)
    mask = torch.zeros(len(examples), longest, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.words)
        ids[row, :n] = torch.tensor(tokenizer.convert_tokens_to_ids(example.words))
        context[row, :n] = torch.tensor(example.context)
        weights[row, :n] = torch.tensor(example.weights)
        mask[row, :n] = 1
    return {"input_ids": ids, "context": context, "weights": weights, "attention_mask": mask}


def noisy_context_embeddings(
    embeddings: torch.Tensor, context: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Gaussian noise (sigma uniform in [0, MAX_NOISE] x embedding RMS, per sequence) and word drop
    on the caption positions: the LLM learns to read approximate word embeddings."""
    rms = embeddings.detach().pow(2).mean().sqrt()
    sigma = torch.rand(embeddings.shape[0], 1, 1, generator=generator) * MAX_NOISE * rms
    noise = torch.randn(embeddings.shape, generator=generator) * sigma
    dropped = torch.rand(context.shape, generator=generator) < WORD_DROP
    noisy = torch.where((context & dropped).unsqueeze(-1), torch.zeros_like(embeddings), embeddings + noise)
    return torch.where(context.unsqueeze(-1), noisy, embeddings)


def weighted_answer_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Next-token cross-entropy on answer tokens only, weighted."""
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten(), reduction="none"
    ).view(input_ids.shape[0], -1)
    target_weights = weights[:, 1:]
    return (losses * target_weights).sum() / target_weights.sum()


def train_language_model(
    tokenizer: PreTrainedTokenizerFast,
    examples: list[TextExample],
    budget: StepBudget,
    seed: int,
    progress=None,
) -> tuple[LlamaForCausalLM, list[float]]:
    """Train the tiny Llama on `examples`; returns it (frozen, eval mode) and the loss per step."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(len(tokenizer)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.learning_rate, weight_decay=0.01)
    warmup = max(1, budget.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, max(0.0, (budget.steps - step) / (budget.steps - warmup))),
    )
    generator = torch.Generator().manual_seed(seed)
    order = np.random.default_rng([seed, 5])
    losses = []
    model.train()
    for step in range(budget.steps):
        chosen = order.choice(len(examples), size=budget.batch_size, replace=False)
        batch = _batch([examples[i] for i in chosen], tokenizer)
        embeddings = model.get_input_embeddings()(batch["input_ids"])
        embeddings = noisy_context_embeddings(embeddings, batch["context"], generator)
        logits = model(inputs_embeds=embeddings, attention_mask=batch["attention_mask"]).logits
        loss = weighted_answer_loss(logits, batch["input_ids"], batch["weights"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if progress is not None:
            progress(step, loss.item())
    model.eval().requires_grad_(False)
    return model, losses


@torch.no_grad()
def text_comparison_accuracy(model: LlamaForCausalLM, tokenizer, comparisons) -> float:
    """Share of text-only comparisons the frozen LLM answers right (its ceiling for DisCRn)."""
    first, second = tokenizer.convert_tokens_to_ids(["first", "second"])
    correct = 0
    rows = list(comparisons)
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        examples = [
            _example(
                [
                    (r["question"], False),
                    ("first :", False),
                    (r["first_caption"], True),
                    ("second :", False),
                    (r["second_caption"], True),
                ],
                r["answer"],
                1.0,
            )
            for r in chunk
        ]
        batch = _batch(examples, tokenizer)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        answer_positions = torch.tensor(
            [e.words.index("answer") + 1 for e in examples]
        )  # the ":" after "answer"
        scores = logits[torch.arange(len(chunk)), answer_positions][:, [first, second]]
        predicted = np.where(scores[:, 0] > scores[:, 1], "first", "second")
        correct += sum(p == r["answer"] for p, r in zip(predicted, chunk, strict=True))
    return correct / max(1, len(rows))
