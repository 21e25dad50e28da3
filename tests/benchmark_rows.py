"""Checks shared by the importer tests: the rows of a benchmark go through the evaluation task they name,
with a fake model that answers from the media each prompt carries."""

from pathlib import Path

import torch

from xllm.evaluation.prompts import ChatPrompt, TextPrompt


def prompt_media(prompt) -> list:
    """The media items of one prompt, in order: the chat's non-text parts, or a DisCRn text prompt's media."""
    if isinstance(prompt, TextPrompt):
        return [item for items in prompt.media.values() for item in items]
    assert isinstance(prompt, ChatPrompt)
    return [
        part[part["type"]]
        for message in prompt.conversation
        if isinstance(message["content"], list)
        for part in message["content"]
        if part["type"] != "text"
    ]


def fake_generate(answer_of):
    """A `Generate` that answers `answer_of(media names)` for every prompt, and records what it was asked."""
    asked = []

    def generate(prompts, generation):
        asked.extend(prompts)
        return [answer_of([Path(str(item)).name for item in prompt_media(prompt)]) for prompt in prompts]

    generate.asked = asked
    return generate


def fake_rank(best_of):
    """A `Rank` giving the candidate `best_of(media names)` the highest log-likelihood after each prompt."""

    def rank(prompts, candidates):
        scores = torch.zeros(len(prompts), len(candidates))
        for row, prompt in enumerate(prompts):
            scores[
                row, candidates.index(best_of([Path(str(item)).name for item in prompt_media(prompt)]))
            ] = 1.0
        return scores

    return rank
