"""CIF: the vectorised integrate-and-fire equals the sequential definition; training and tail rules."""

import pytest
import torch

from xllm.modeling_xllm.modeling_cif import (
    CifWeightPredictor,
    ContinuousIntegrateAndFire,
    integrate_and_fire,
    integrate_and_fire_reference,
)


def random_batch(seed: int, lengths: list[int], width: int = 8, max_alpha: float = 1.0):
    """Random frames and weights for samples of the given lengths; padded frames weigh 0."""
    generator = torch.Generator().manual_seed(seed)
    frames = max(lengths)
    hidden_states = torch.randn(len(lengths), frames, width, generator=generator)
    alphas = torch.rand(len(lengths), frames, generator=generator) * max_alpha
    frame_mask = torch.arange(frames) < torch.tensor(lengths)[:, None]
    return hidden_states, alphas * frame_mask, frame_mask


def assert_same_tokens(hidden_states, alphas, **kwargs):
    embeddings, lengths = integrate_and_fire(hidden_states, alphas, **kwargs)
    expected_embeddings, expected_lengths = integrate_and_fire_reference(hidden_states, alphas, **kwargs)
    assert torch.equal(lengths, expected_lengths)
    assert embeddings.shape == expected_embeddings.shape
    torch.testing.assert_close(embeddings, expected_embeddings, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("threshold", [1.0, 0.7, 2.5])
def test_vectorised_equals_reference_for_a_batch_of_different_lengths(threshold):
    hidden_states, alphas, _ = random_batch(seed=0, lengths=[60, 23, 41, 1])
    assert_same_tokens(hidden_states, alphas, threshold=threshold, tail_threshold=0.4 * threshold)


@pytest.mark.parametrize("threshold", [1.0, 0.3])
def test_frames_that_fire_several_times_match_reference(threshold):
    hidden_states, alphas, _ = random_batch(seed=1, lengths=[50, 37], max_alpha=4.0)
    assert (alphas > 2 * threshold).any()
    assert_same_tokens(hidden_states, alphas, threshold=threshold)


def test_long_inputs_match_reference_to_1e_5():
    hidden_states, alphas, _ = random_batch(seed=2, lengths=[1000, 700], width=32, max_alpha=0.6)
    assert_same_tokens(hidden_states, alphas)


def test_all_padding_sample_fires_nothing_and_stays_zero():
    hidden_states, alphas, _ = random_batch(seed=3, lengths=[30, 30])
    alphas[1] = 0
    embeddings, lengths = integrate_and_fire(hidden_states, alphas)
    assert lengths[1] == 0 and lengths[0] > 0
    assert torch.all(embeddings[1] == 0)
    assert_same_tokens(hidden_states, alphas)


def test_batch_without_any_fire_returns_zero_tokens():
    hidden_states = torch.randn(2, 5, 4)
    embeddings, lengths = integrate_and_fire(hidden_states, torch.full((2, 5), 0.05))
    assert embeddings.shape == (2, 0, 4)
    assert lengths.tolist() == [0, 0]


def test_weight_of_a_crossing_frame_is_split_between_two_tokens():
    hidden_states = torch.eye(4).unsqueeze(0)  # frame t is the unit vector e_t
    alphas = torch.tensor([[0.25, 1.0, 1.5, 0.25]])  # crosses 1 inside frame 1, 2 inside frame 2
    embeddings, lengths = integrate_and_fire(hidden_states, alphas)
    expected = torch.tensor([[0.25, 0.75, 0.0, 0.0], [0.0, 0.25, 0.75, 0.0], [0.0, 0.0, 0.75, 0.25]])
    assert lengths.tolist() == [3]
    torch.testing.assert_close(embeddings[0], expected, atol=1e-6, rtol=0)


def test_frames_ending_exactly_on_the_threshold_fire_once_with_nothing_carried():
    hidden_states = torch.eye(5).unsqueeze(0)
    alphas = torch.tensor([[0.5, 0.5, 2.0, 0.25, 0.75]])  # sums 1, 3 and 4 land on thresholds
    embeddings, lengths = integrate_and_fire(hidden_states, alphas)
    expected = torch.tensor(
        [[0.5, 0.5, 0, 0, 0], [0, 0, 1.0, 0, 0], [0, 0, 1.0, 0, 0], [0, 0, 0, 0.25, 0.75]]
    )
    assert lengths.tolist() == [4]
    torch.testing.assert_close(embeddings[0], expected, atol=1e-6, rtol=0)
    assert_same_tokens(hidden_states, alphas)


def test_padding_of_the_weights_never_reaches_the_tokens():
    hidden_states, alphas, _ = random_batch(seed=4, lengths=[20, 9])
    embeddings, lengths = integrate_and_fire(hidden_states, alphas)
    alone, alone_length = integrate_and_fire(hidden_states[1:, :9], alphas[1:, :9])
    assert lengths[1] == alone_length[0]
    torch.testing.assert_close(embeddings[1, : lengths[1]], alone[0], atol=1e-6, rtol=0)
    assert torch.all(embeddings[1, lengths[1] :] == 0)


def test_tail_fires_unscaled_only_above_tail_threshold():
    hidden_states = torch.eye(4).unsqueeze(0)
    alphas = torch.tensor([[0.5, 0.5, 0.375, 0.25]])  # one token, then 0.625 left over
    embeddings, lengths = integrate_and_fire(hidden_states, alphas, tail_threshold=0.5)
    assert lengths.tolist() == [2]
    torch.testing.assert_close(embeddings[0, 1], torch.tensor([0.0, 0.0, 0.375, 0.25]))
    _, lengths = integrate_and_fire(hidden_states, alphas, tail_threshold=0.7)
    assert lengths.tolist() == [1]
    assert_same_tokens(hidden_states, alphas, tail_threshold=0.5)


def test_vectorised_gradients_are_exact_in_both_inputs():
    hidden_states, alphas, _ = random_batch(seed=5, lengths=[12, 7], width=3, max_alpha=1.5)
    inputs = (hidden_states.double().requires_grad_(), alphas.double().requires_grad_())
    assert torch.autograd.gradcheck(lambda h, a: integrate_and_fire(h, a, 0.8)[0], inputs)


def test_weight_predictor_gives_padded_frames_zero_and_ignores_padding_content():
    predictor = CifWeightPredictor(hidden_size=8).eval()
    hidden_states, _, frame_mask = random_batch(seed=6, lengths=[10, 6])
    padded_with_noise = hidden_states.clone()
    padded_with_noise[1, 6:] = 100.0
    alphas = predictor(padded_with_noise, frame_mask)
    assert torch.all(alphas[1, 6:] == 0)
    assert torch.all((alphas[:, :6] > 0) & (alphas[:, :6] < 1))
    alone = predictor(hidden_states[1:, :6], frame_mask[1:, :6])
    torch.testing.assert_close(alphas[1:, :6], alone, atol=1e-6, rtol=0)


def test_training_fires_exactly_the_target_length_for_every_sample():
    torch.manual_seed(7)
    cif = ContinuousIntegrateAndFire(hidden_size=8)
    lengths = torch.randint(20, 60, (64,)).tolist()
    hidden_states, _, frame_mask = random_batch(seed=7, lengths=lengths)
    target_lengths = torch.randint(1, 20, (64,))
    output = cif(hidden_states, frame_mask, target_lengths)
    assert torch.equal(output.token_lengths, target_lengths)
    assert output.token_embeddings.shape == (64, int(target_lengths.max()), 8)
    scaled_sums = (output.alphas * (target_lengths / output.alphas.sum(-1))[:, None]).double().sum(-1)
    assert (scaled_sums < target_lengths).any()  # the rounding case this test is about did occur


def test_last_fire_survives_a_sum_that_rounds_below_the_target():
    hidden_states = torch.randn(1, 3, 4)
    alphas = torch.tensor([[1.0, 1.0, 0.99999994]])  # 2.99999994 after float32 scaling
    _, lengths = integrate_and_fire(hidden_states, alphas, tail_threshold=0.5)
    assert lengths.tolist() == [3]


def test_quantity_loss_is_differentiable_and_reaches_the_weight_predictor():
    torch.manual_seed(8)
    cif = ContinuousIntegrateAndFire(hidden_size=8)
    hidden_states, _, frame_mask = random_batch(seed=8, lengths=[15, 11])
    target_lengths = torch.tensor([4, 6])
    output = cif(hidden_states, frame_mask, target_lengths)
    expected_loss = (output.alphas.sum(-1) - target_lengths).abs().mean()
    torch.testing.assert_close(output.quantity_loss, expected_loss)
    output.quantity_loss.backward()
    for parameter in cif.weight_predictor.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_token_embeddings_pass_gradients_to_the_weight_predictor():
    torch.manual_seed(9)
    cif = ContinuousIntegrateAndFire(hidden_size=8)
    hidden_states, _, frame_mask = random_batch(seed=9, lengths=[15, 11])
    output = cif(hidden_states, frame_mask, torch.tensor([4, 6]))
    output.token_embeddings.pow(2).sum().backward()
    assert cif.weight_predictor.to_weight.weight.grad.abs().sum() > 0


def test_inference_uses_the_tail_rule_and_returns_no_quantity_loss():
    torch.manual_seed(10)
    cif = ContinuousIntegrateAndFire(hidden_size=8, tail_threshold=0.3)
    hidden_states, _, frame_mask = random_batch(seed=10, lengths=[15, 11])
    output = cif(hidden_states, frame_mask)
    expected_embeddings, expected_lengths = integrate_and_fire_reference(
        hidden_states, output.alphas, tail_threshold=0.3
    )
    assert output.quantity_loss is None
    assert torch.equal(output.token_lengths, expected_lengths)
    torch.testing.assert_close(output.token_embeddings, expected_embeddings, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: integrate_and_fire(torch.zeros(2, 5, 3), torch.zeros(2, 4)), "alphas"),
        (lambda: integrate_and_fire(torch.zeros(2, 5, 3), torch.zeros(2, 5), threshold=0.0), "threshold"),
        (lambda: CifWeightPredictor(8, conv_kernel_size=4), "conv_kernel_size"),
        (lambda: ContinuousIntegrateAndFire(8, tail_threshold=1.0), "tail_threshold"),
        (lambda: ContinuousIntegrateAndFire(8)(torch.zeros(2, 5, 3)), "hidden_states"),
        (lambda: ContinuousIntegrateAndFire(8)(torch.zeros(2, 5, 8), torch.ones(2, 5)), "frame_mask"),
        (lambda: ContinuousIntegrateAndFire(8)(torch.zeros(2, 5, 8), None, torch.ones(3)), "target_lengths"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()
