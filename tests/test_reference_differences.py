"""Defects of the reference code that the package does not reproduce (README, "Differences from the
reference implementations")."""

import torch
from conftest import random_video


def test_every_frame_reads_its_own_samples_instruction_at_batch_two(tiny_model, tiny_processor):
    # LAVIS tiles the instructions with `repeat` over sample-major frames (blip2_vicuna_xinstruct.py:1000,
    # :1010-1011): at batch 2, frame 0 of sample 1 would read sample 0's instruction.
    texts = ["<video> what is moving ?", "<video> which colour is the big square in the middle ?"]
    inputs = tiny_processor(
        videos=[random_video(3, seed=1), random_video(3, seed=2)], text=texts, num_frames=3
    )
    instructions = {name: inputs[name] for name in ("qformer_input_ids", "qformer_attention_mask")}
    with torch.no_grad():
        batched = tiny_model.get_video_features(inputs["pixel_values_videos"], **instructions).pooler_output
        for sample in range(2):
            alone = tiny_model.get_video_features(
                inputs["pixel_values_videos"][sample : sample + 1],
                **{name: value[sample : sample + 1] for name, value in instructions.items()},
            ).pooler_output
            torch.testing.assert_close(batched[sample : sample + 1], alone, atol=1e-5, rtol=1e-5)
    assert not torch.equal(instructions["qformer_input_ids"][0], instructions["qformer_input_ids"][1])


def test_label_balancing_swaps_the_media_with_the_label():
    # LAVIS swaps label, properties and captions but loads the media unswapped
    # (discriminatory_reasoning_datasets.py:113-121 against :148-149).
    from xllm.evaluation.discrn_builder import balance_labels

    pair = {
        "first_id": "dog", "first_media": "dog.wav", "first_caption": "a dog barks", "first_modality": "audio",
        "second_id": "cat", "second_media": "cat.mp4", "second_caption": "a cat sleeps", "second_modality": "video",
        "label": "first",
    }  # fmt: skip
    kept, swapped = balance_labels([pair, pair])
    assert kept == pair
    assert swapped["label"] == "second"
    assert (swapped["second_media"], swapped["second_caption"], swapped["second_id"]) == (
        "dog.wav",
        "a dog barks",
        "dog",
    )
    assert swapped["first_media"] == "cat.mp4" and swapped["first_modality"] == "video"
