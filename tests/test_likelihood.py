"""Classification by likelihood ranking (LAVIS `_predict_class`): batched scores equal one-by-one scores."""

import pytest
import torch
from conftest import random_image
from media_files import tone

from xllm.evaluation.generation import model_inputs
from xllm.evaluation.likelihood import candidate_scores, candidate_tokens, ranked_choice, score_candidates
from xllm.evaluation.prompts import ChatPrompt

CANDIDATES = ["red", "blue square", "a green star shape"]


def prompts(count: int) -> list[ChatPrompt]:
    """Image questions of different lengths, so that a batch is padded."""
    questions = ["what is it?", "which colour is this shape, in one word?", "name it"]
    return [
        ChatPrompt(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": random_image(seed, size=20)},
                        {"type": "text", "text": questions[seed % len(questions)]},
                    ],
                }
            ]
        )  # fmt: skip
        for seed in range(count)
    ]


def one_by_one(model, processor, prompt: ChatPrompt, candidate: str) -> float:
    """The reference: one unpadded forward over prompt + candidate tokens, log-probs of the candidate summed."""
    inputs = model_inputs(processor, [prompt])
    ids, _ = candidate_tokens(processor, [candidate])
    full = torch.cat([inputs["input_ids"], ids], 1)
    inputs = {**inputs, "input_ids": full, "attention_mask": torch.ones_like(full)}
    with torch.no_grad():
        logits = model(**inputs).logits[0].float()  # (tokens, vocab)
    log_probs = torch.log_softmax(logits, -1)
    # Counted from the end: speech makes the model's sequence longer than `input_ids`.
    start = len(log_probs) - ids.shape[1]
    return sum(log_probs[start - 1 + t, ids[0, t]].item() for t in range(ids.shape[1]))


@pytest.mark.parametrize("batch_size, candidates_per_forward", [(3, None), (2, 2), (1, 1)])
def test_batched_candidate_scores_equal_scoring_each_candidate_alone(
    tiny_model, tiny_processor, batch_size, candidates_per_forward
):
    items = prompts(3)
    scores = score_candidates(
        tiny_model, tiny_processor, items, CANDIDATES, batch_size, candidates_per_forward, progress=False
    )
    expected = torch.tensor(
        [[one_by_one(tiny_model, tiny_processor, item, c) for c in CANDIDATES] for item in items]
    )
    assert scores.shape == (3, 3) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-5)


def test_speech_prompts_of_different_lengths_score_as_alone(tiny_model, tiny_processor):
    # CIF decides the speech token count inside the model, so the batch is re-padded there.
    items = [
        ChatPrompt(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "speech", "speech": tone(seconds, 300.0)},
                        {"type": "text", "text": "what is said?"},
                    ],
                }
            ]
        )  # fmt: skip
        for seconds in (0.4, 1.3)
    ]
    scores = score_candidates(tiny_model, tiny_processor, items, CANDIDATES, batch_size=2, progress=False)
    expected = torch.tensor(
        [[one_by_one(tiny_model, tiny_processor, item, c) for c in CANDIDATES] for item in items]
    )
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-5)


def test_candidates_of_several_tokens_score_their_summed_log_likelihood(tiny_model, tiny_processor):
    ids, mask = candidate_tokens(tiny_processor, CANDIDATES)
    assert mask.sum(1).tolist() == [len(tiny_processor.tokenizer(c, add_special_tokens=False)["input_ids"])
                                    for c in CANDIDATES]  # fmt: skip
    assert mask.sum(1).max() > 1 and (mask[:, 0] == 1).all()


def test_candidate_scores_flag_only_the_greedy_continuation_as_greedy(tiny_model, tiny_processor):
    [item] = prompts(1)
    inputs = model_inputs(tiny_processor, [item])
    generated = tiny_model.generate(
        **inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False, num_beams=1
    )
    new_ids = generated[0, inputs["input_ids"].shape[1] :]
    greedy_text = " ".join(tiny_processor.tokenizer.convert_ids_to_tokens(new_ids.tolist()))
    assert candidate_tokens(tiny_processor, [greedy_text])[0][0].tolist() == new_ids.tolist()
    # The greedy text with its last token changed, and the other candidates, are not greedy.
    changed = " ".join([*greedy_text.split()[:-1], "red" if greedy_text.split()[-1] != "red" else "blue"])
    candidates = [changed, greedy_text, *CANDIDATES]
    result = candidate_scores(
        tiny_model, tiny_processor, [item, item], candidates, batch_size=2, progress=False
    )
    assert result.greedy.tolist() == [[False, True] + [c == greedy_text for c in CANDIDATES]] * 2
    torch.testing.assert_close(
        result.log_likelihood,
        score_candidates(tiny_model, tiny_processor, [item, item], candidates, progress=False),
    )


def test_ranked_choice_is_the_highest_score_and_the_first_on_ties():
    scores = torch.tensor([[-3.0, -1.0, -2.0], [-1.0, -1.0, -5.0]])
    assert ranked_choice(scores, ["a", "b", "c"]) == ["b", "a"]


def test_empty_candidate_is_rejected(tiny_processor):
    with pytest.raises(ValueError, match="non-empty strings"):
        candidate_tokens(tiny_processor, ["red", " "])
