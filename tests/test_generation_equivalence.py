"""What transformers' `GenerationTesterMixin` checks (its module is not in the sdist, see
tests/conformance/), on a batch mixing an image, a video and text-only samples under left padding.

Already covered in tests/test_model.py: batched greedy equals one sample at a time, greedy with cache equals
without, left-padded batched logits equal single ones, beams read each sample's own media.
"""

import pytest
import torch
from conftest import random_image, random_video

LENGTH = 5  # new tokens per generation; EOS may not stop a random model early


@pytest.fixture(scope="module")
def batch(tiny_processor):
    return tiny_processor(
        images=[random_image(3)],
        videos=[random_video(4, seed=1)],
        text=["<image> what colour is it ?", "<video> what is moving ?", "describe it"],
    )


def generate(model, inputs, **kwargs):
    return model.generate(**inputs, max_new_tokens=LENGTH, min_new_tokens=LENGTH, **kwargs)


def test_greedy_scores_are_the_logits_of_a_forward_pass_over_the_generated_sequence(tiny_model, batch):
    out = generate(tiny_model, batch, do_sample=False, output_logits=True, return_dict_in_generate=True)
    prompt_length = batch["input_ids"].shape[1]
    full_mask = torch.cat(
        [batch["attention_mask"], torch.ones(len(out.sequences), LENGTH, dtype=torch.long)], 1
    )
    inputs = {**batch, "input_ids": out.sequences, "attention_mask": full_mask}
    with torch.no_grad():
        logits = tiny_model(**inputs).logits  # (batch, prompt + new, vocab)
    for step, step_logits in enumerate(out.logits):
        torch.testing.assert_close(step_logits, logits[:, prompt_length - 1 + step], atol=1e-5, rtol=1e-5)
        assert torch.equal(out.sequences[:, prompt_length + step], step_logits.argmax(-1))


def test_sampling_with_top_k_one_is_greedy(tiny_model, batch):
    torch.manual_seed(0)
    sampled = generate(tiny_model, batch, do_sample=True, top_k=1, temperature=1.0)
    assert torch.equal(sampled, generate(tiny_model, batch, do_sample=False))


@pytest.mark.parametrize("use_cache", [True, False])
def test_seeded_sampling_is_reproducible_and_independent_of_the_cache(tiny_model, batch, use_cache):
    torch.manual_seed(7)
    reference = generate(tiny_model, batch, do_sample=True, top_k=0, temperature=1.5)
    torch.manual_seed(7)
    again = generate(tiny_model, batch, do_sample=True, top_k=0, temperature=1.5, use_cache=use_cache)
    assert torch.equal(reference, again)


def test_beam_search_with_cache_equals_without(tiny_model, batch):
    with_cache = generate(tiny_model, batch, num_beams=3, do_sample=False)
    without_cache = generate(tiny_model, batch, num_beams=3, do_sample=False, use_cache=False)
    assert torch.equal(with_cache, without_cache)


def test_beam_search_best_sequence_is_the_first_of_the_returned_ones(tiny_model, batch):
    best = generate(tiny_model, batch, num_beams=3, do_sample=False)
    out = generate(
        tiny_model,
        batch,
        num_beams=3,
        do_sample=False,
        num_return_sequences=3,
        return_dict_in_generate=True,
        output_scores=True,
    )
    assert out.sequences.shape[0] == 3 * len(best)
    assert torch.equal(out.sequences[::3], best)
    scores = out.sequences_scores.view(len(best), 3)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # returned best first


def test_beam_sampling_is_reproducible_with_a_seed(tiny_model, batch):
    torch.manual_seed(3)
    first = generate(tiny_model, batch, num_beams=2, do_sample=True)
    torch.manual_seed(3)
    assert torch.equal(first, generate(tiny_model, batch, num_beams=2, do_sample=True))


def test_only_the_prefill_step_receives_media(tiny_model, batch):
    from xllm.modeling_xllm.model_modalities import media_input_names

    received = []
    hook = tiny_model.register_forward_pre_hook(
        lambda module, args, kwargs: received.append({k for k, v in kwargs.items() if v is not None}),
        with_kwargs=True,
    )
    try:
        generate(tiny_model, batch, do_sample=False)
    finally:
        hook.remove()
    assert len(received) == LENGTH
    assert {"pixel_values", "pixel_values_videos"} <= received[0]
    assert all(not (names & media_input_names()) for names in received[1:])  # in the KV cache after prefill


def test_the_precomputed_forward_signature_is_the_functions_own(tiny_model):
    import inspect

    forward = type(tiny_model).forward
    assert forward.__signature__ == inspect.signature(inspect.unwrap(forward))
    assert list(inspect.signature(tiny_model.forward).parameters)[:2] == ["input_ids", "attention_mask"]
