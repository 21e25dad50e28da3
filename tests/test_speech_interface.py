"""The C-Former speech interface and the splicing of its variable-length output."""

import pytest
import torch

from xllm import XLLMInterfaceConfig
from xllm.modeling_xllm.modeling_cformer import CFormerInterface
from xllm.modeling_xllm.modeling_splice import IGNORE_INDEX, splice_variable_length_features


def expected_splice(embeds, placeholder, mask, features, lengths, labels, padding_side):
    """Loop-by-loop definition of the splice, for comparison."""
    rows, label_rows, item = [], [], 0
    for b in range(embeds.shape[0]):
        row, row_labels = [], []
        for s in range(embeds.shape[1]):
            if not mask[b, s]:
                continue
            if placeholder[b, s]:
                row.extend(features[item, : lengths[item]])
                row_labels.extend([IGNORE_INDEX] * int(lengths[item]))
                item += 1
            else:
                row.append(embeds[b, s])
                row_labels.append(int(labels[b, s]))
        rows.append(row)
        label_rows.append(row_labels)
    longest = max(len(r) for r in rows)
    out = torch.zeros(len(rows), longest, embeds.shape[-1])
    out_labels = torch.full((len(rows), longest), IGNORE_INDEX)
    out_mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for b, (row, row_labels) in enumerate(zip(rows, label_rows, strict=True)):
        start = longest - len(row) if padding_side == "left" else 0
        if row:
            out[b, start : start + len(row)] = torch.stack(row)
        out_labels[b, start : start + len(row)] = torch.tensor(row_labels, dtype=torch.long)
        out_mask[b, start : start + len(row)] = 1
    return out, out_mask, out_labels


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_splice_replaces_each_placeholder_by_its_items_tokens_and_repads(padding_side):
    torch.manual_seed(0)
    embeds = torch.randn(3, 6, 4)
    placeholder = torch.zeros(3, 6, dtype=torch.bool)
    mask = torch.ones(3, 6, dtype=torch.long)
    if padding_side == "left":
        mask[1, :2] = 0
        placeholder[0, 1] = placeholder[0, 4] = placeholder[1, 3] = True
    else:
        mask[1, 4:] = 0
        placeholder[0, 1] = placeholder[0, 4] = placeholder[1, 2] = True
    lengths = torch.tensor([3, 1, 5])
    features = torch.randn(3, 5, 4)
    labels = torch.randint(0, 50, (3, 6))

    spliced = splice_variable_length_features(
        embeds, placeholder, mask, features, lengths, labels, padding_side
    )
    want_embeds, want_mask, want_labels = expected_splice(
        embeds, placeholder, mask, features, lengths, labels, padding_side
    )
    torch.testing.assert_close(spliced.inputs_embeds, want_embeds)
    assert torch.equal(spliced.attention_mask, want_mask)
    assert torch.equal(spliced.labels, want_labels)
    assert torch.equal(spliced.position_ids, (want_mask.cumsum(1) - 1).clamp(min=0))


def test_splice_rejects_a_placeholder_count_that_differs_from_the_features():
    placeholder = torch.zeros(1, 4, dtype=torch.bool)
    placeholder[0, 1] = True
    with pytest.raises(ValueError, match="1 placeholder tokens .* 2 feature sequences"):
        splice_variable_length_features(
            torch.zeros(1, 4, 2), placeholder, None, torch.zeros(2, 3, 2), torch.tensor([3, 3])
        )


def tiny_cformer(**kwargs) -> CFormerInterface:
    config = XLLMInterfaceConfig(
        kind="cformer",
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        encoder_hidden_size=12,
        output_hidden_size=20,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **kwargs,
    )
    return CFormerInterface(config)


def test_cformer_fires_the_transcript_length_in_training_and_trains_its_weight_predictor():
    torch.manual_seed(0)
    cformer = tiny_cformer()
    frames = torch.randn(3, 40, 12)
    frame_mask = torch.ones(3, 40, dtype=torch.bool)
    frame_mask[1, 25:] = False
    targets = torch.tensor([7, 4, 11])
    output = cformer(frames, frame_mask, target_lengths=targets)
    assert output.token_lengths.tolist() == targets.tolist()
    assert output.token_embeddings.shape == (3, 11, 20)
    assert torch.all(output.token_embeddings[1, 4:] == 0)
    (output.quantity_loss + output.token_embeddings.pow(2).mean()).backward()
    predictor_grads = [p.grad for p in cformer.cif.weight_predictor.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in predictor_grads)


def test_cformer_padded_frames_do_not_change_a_samples_tokens():
    torch.manual_seed(0)
    cformer = tiny_cformer().eval()
    frames = torch.randn(1, 30, 12)
    padded = torch.cat([frames, torch.randn(1, 10, 12)], dim=1)
    mask = torch.ones(1, 40, dtype=torch.bool)
    mask[0, 30:] = False
    alone = cformer(frames)
    with_padding = cformer(padded, mask)
    assert alone.token_lengths.tolist() == with_padding.token_lengths.tolist()
    torch.testing.assert_close(alone.token_embeddings, with_padding.token_embeddings, atol=1e-5, rtol=1e-5)


def test_cformer_returns_empty_tokens_when_nothing_fires():
    cformer = tiny_cformer().eval()
    with torch.no_grad():
        for parameter in cformer.cif.weight_predictor.parameters():
            parameter.zero_()
        cformer.cif.weight_predictor.to_weight.bias.fill_(-20.0)  # weights ~0: CIF fires nothing
    output = cformer(torch.randn(2, 10, 12))
    assert output.token_lengths.tolist() == [0, 0]
    assert output.token_embeddings.shape == (2, 0, 20)
