"""Classification by likelihood: rank candidate answers by the LLM's log-likelihood given the input.

LAVIS ranks the classes of a classification task this way (`Blip2VicunaXInstruct._predict_class`,
blip2_vicuna_xinstruct.py:1680): each candidate is tokenized on its own (blip2_vicuna_xinstruct.py:2028),
its start token dropped (`concat_text_input_output`, :500), appended right after the prompt's real
tokens, and scored by the LLM's loss over its tokens; the class is the candidate of highest score
(multimodal_classification.py:82). LAVIS's per-row loss is the sum of the candidate's token
log-likelihoods divided by the padded length of the batch (modeling_llama.py:717), the same for every
candidate of one forward, so the ranking is that of the summed log-likelihood, which we compute; the
sum does not depend on how candidates are batched, whereas LAVIS's scale changes between
`n_segments` chunks.

`candidate_scores` also says whether each candidate is what greedy decoding would write (every token the
argmax of its position's logits), which lmms-eval's `loglikelihood` contract asks for (`xllm.lmms_eval_model`).

Batched without repeating the prompt's work: one forward over a batch of prompts (media encoded once)
fills the KV cache; the cache is repeated once per candidate and one forward scores all candidates of
all those prompts (`candidates_per_forward` chunks them to bound memory). The first candidate token is
scored by the prompt's last logits.
"""

import copy
from typing import NamedTuple

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, ProcessorMixin

from .generation import model_inputs
from .prompts import Prompt


def candidate_tokens(processor: ProcessorMixin, candidates: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each candidate tokenized on its own without special tokens, right-padded: ids and mask (candidates, tokens)."""
    if not candidates or any(not isinstance(c, str) or not c.strip() for c in candidates):
        raise ValueError(f"candidates must be non-empty strings, got {candidates!r}")
    tokens = processor.tokenizer(
        list(candidates), add_special_tokens=False, padding=True, padding_side="right", return_tensors="pt"
    )
    return tokens["input_ids"], tokens["attention_mask"]


def token_log_likelihoods(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """log p(token) under each position's logits: (rows, tokens, vocab), (rows, tokens) -> (rows, tokens)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return log_probs.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)


class CandidateScores(NamedTuple):
    """Per prompt and candidate (prompts, candidates): the summed log-likelihood (fp32) and whether every
    token of the candidate is the argmax of its position (greedy decoding would write it)."""

    log_likelihood: torch.Tensor
    greedy: torch.Tensor


@torch.inference_mode()
def candidate_scores(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    prompts: list[Prompt],
    candidates: list[str],
    batch_size: int = 8,
    candidates_per_forward: int | None = None,
    progress: bool = True,
) -> CandidateScores:
    """The summed log-likelihood of every candidate after every prompt, and whether it is greedy."""
    ids, mask = candidate_tokens(processor, candidates)
    chunk = candidates_per_forward or len(candidates)
    if chunk < 1:
        raise ValueError(f"candidates_per_forward must be at least 1, got {candidates_per_forward}")
    ids, mask = ids.to(model.device), mask.to(model.device)
    scores, greedy = [], []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="ranking", unit="batch", leave=False, disable=not progress):
        inputs = model_inputs(processor, prompts[start : start + batch_size]).to(
            model.device, dtype=model.dtype
        )
        prompt = model(**inputs, use_cache=True, logits_to_keep=1)
        # Speech splices its tokens in: the model returns the mask of the sequence it really ran.
        prompt_mask = prompt.attention_mask if prompt.attention_mask is not None else inputs["attention_mask"]
        first = torch.log_softmax(prompt.logits[:, -1].float(), dim=-1)  # (batch, vocab)
        batch = len(prompt_mask)
        batch_scores, batch_greedy = [], []
        for begin in range(0, len(candidates), chunk):
            chunk_ids, chunk_mask = ids[begin : begin + chunk], mask[begin : begin + chunk]
            count = len(chunk_ids)
            cache = copy.deepcopy(prompt.past_key_values)
            cache.batch_repeat_interleave(count)  # rows: prompt-major, then candidate
            rows_ids = chunk_ids.repeat(batch, 1)  # (batch * count, tokens)
            rows_mask = chunk_mask.repeat(batch, 1)
            attention = torch.cat(
                [prompt_mask.repeat_interleave(count, 0), rows_mask.to(prompt_mask.dtype)], 1
            )
            later = model(input_ids=rows_ids, attention_mask=attention, past_key_values=cache, use_cache=True)
            first_rows = first.repeat_interleave(count, 0)  # (rows, vocab)
            first_token = first_rows.gather(-1, rows_ids[:, :1])  # (rows, 1)
            rest = token_log_likelihoods(later.logits[:, :-1], rows_ids[:, 1:])  # (rows, tokens - 1)
            per_token = torch.cat([first_token, rest], 1) * rows_mask
            batch_scores.append(per_token.sum(1).view(batch, count))
            argmax = torch.cat([first_rows.argmax(-1, keepdim=True), later.logits[:, :-1].argmax(-1)], 1)
            matches = (argmax == rows_ids) | ~rows_mask.bool()  # padding never breaks greediness
            batch_greedy.append(matches.all(1).view(batch, count))
        scores.append(torch.cat(batch_scores, 1))
        greedy.append(torch.cat(batch_greedy, 1))
    return CandidateScores(torch.cat(scores), torch.cat(greedy))


def score_candidates(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    prompts: list[Prompt],
    candidates: list[str],
    batch_size: int = 8,
    candidates_per_forward: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """The summed log-likelihood of every candidate after every prompt: (prompts, candidates), fp32."""
    return candidate_scores(
        model, processor, prompts, candidates, batch_size, candidates_per_forward, progress
    ).log_likelihood


def ranked_choice(scores: torch.Tensor, candidates: list[str]) -> list[str]:
    """The candidate of highest score for each row (the first one on ties, as `max(1)` in LAVIS)."""
    return [candidates[index] for index in scores.argmax(1).tolist()]


__all__ = ["CandidateScores", "candidate_scores", "candidate_tokens", "ranked_choice", "score_candidates"]
