"""XLLMProcessor: placeholder expansion, padding, instructions, chat-template labels, save/load."""

import pytest
import torch
from conftest import random_image, random_video

from xllm import XLLMProcessor
from xllm.testing import tiny_processor as build_tiny_processor


def conversation(answers: list[str], with_image: bool = True) -> list[dict]:
    """A multi-turn chat: one question per answer, an image in the first question."""
    questions = ["what colour is it ?", "which shape is it ?", "is it small ?"]
    messages = []
    for turn, answer in enumerate(answers):
        content = [{"type": "text", "text": questions[turn]}]
        if turn == 0 and with_image:
            content.insert(0, {"type": "image", "image": random_image(turn)})
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def chat_inputs(processor, conversations, **kwargs):
    return processor.apply_chat_template(
        conversations, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kwargs
    )


def test_labels_keep_only_the_assistant_tokens_of_every_turn(tiny_processor):
    inputs = chat_inputs(tiny_processor, conversation(["red", "a large circle"]))
    labels, input_ids = inputs["labels"][0], inputs["input_ids"][0]
    trained = labels != -100
    assert torch.equal(labels[trained], input_ids[trained])
    assert tiny_processor.tokenizer.convert_ids_to_tokens(labels[trained]) == [
        "red",
        "</s>",
        "a",
        "large",
        "circle",
        "</s>",
    ]
    prompt_tokens = tiny_processor.tokenizer.convert_ids_to_tokens(input_ids[~trained])
    assert prompt_tokens.count("<image>") == tiny_processor.num_query_tokens["image"]
    assert prompt_tokens.count("Question") == prompt_tokens.count("Answer") == 2


def test_labels_mask_left_padding_in_a_batch_of_conversations(tiny_processor):
    inputs = chat_inputs(
        tiny_processor, [conversation(["red"]), conversation(["a large blue circle"])], padding=True
    )
    padding = inputs["attention_mask"] == 0
    assert padding[0, 0] and not padding[1].any()
    assert (inputs["labels"][padding] == -100).all()
    assert [int(row.ne(-100).sum()) for row in inputs["labels"]] == [2, 5]  # answer words + </s>


def test_chat_template_writes_the_x_llm_prompt(tiny_processor):
    prompt = tiny_processor.apply_chat_template(conversation(["red"]), tokenize=False)
    assert prompt == "Question: <image>what colour is it ?\n Answer: red</s>\n"


@pytest.mark.parametrize("num_query_tokens", [1, 6])
def test_placeholders_expand_to_the_interface_token_count(num_query_tokens):
    processor = build_tiny_processor(num_query_tokens=num_query_tokens)
    inputs = processor(
        images=[random_image(0), random_image(1)],
        videos=[random_video(5)],
        text=["<image> and <image> , then <video> ?"],
        num_frames=3,
    )
    ids = inputs["input_ids"][0]
    assert int((ids == processor.placeholder_ids["image"]).sum()) == 2 * num_query_tokens
    assert int((ids == processor.placeholder_ids["video"]).sum()) == 3 * num_query_tokens
    assert inputs["pixel_values"].shape[0] == 2
    assert inputs["pixel_values_videos"].shape[:2] == (1, 3)


def test_video_processor_samples_the_requested_number_of_frames_by_default(tiny_processor):
    inputs = tiny_processor(videos=[random_video(9)], text="<video> what is moving ?")
    assert inputs["pixel_values_videos"].shape[1] == tiny_processor.video_processor.num_frames


def test_images_given_per_sample_equal_images_given_flat(tiny_processor):
    images = [random_image(0), random_image(1)]
    texts = ["<image> what colour ?", "describe it", "<image> which shape ?"]
    flat = tiny_processor(images=images, text=texts)
    nested = tiny_processor(images=[[images[0]], [], [images[1]]], text=texts)
    for name in flat:
        assert torch.equal(flat[name], nested[name]), name


def test_batches_are_left_padded_by_default_and_right_padded_on_request(tiny_processor):
    texts = ["describe it", "what colour is the small circle ?"]
    pad_id = tiny_processor.tokenizer.pad_token_id
    left = tiny_processor(text=texts)
    right = tiny_processor(text=texts, padding_side="right")
    short_length = int(left["attention_mask"][0].sum())
    padding = left["input_ids"].shape[1] - short_length
    assert left["attention_mask"][0].tolist() == [0] * padding + [1] * short_length
    assert (left["input_ids"][0, :padding] == pad_id).all()
    assert right["attention_mask"][0].tolist() == [1] * short_length + [0] * padding
    assert torch.equal(left["input_ids"][0, padding:], right["input_ids"][0, :short_length])
    assert left["attention_mask"][1].all()


def test_placeholder_and_image_count_mismatch_raises_with_both_numbers(tiny_processor):
    with pytest.raises(ValueError, match=r"2 <image> placeholder\(s\) but 1 image input"):
        tiny_processor(images=[random_image(0)], text=["<image> and <image> ?"])


def test_instructions_default_to_the_text_without_placeholders(tiny_processor):
    inputs = tiny_processor(images=[random_image(0)], text="<image> what colour is it ?")
    words = tiny_processor.qformer_tokenizer.convert_ids_to_tokens(inputs["qformer_input_ids"][0])
    assert words == ["[CLS]", "what", "colour", "is", "it", "?", "[SEP]"]


def test_long_instructions_keep_their_end():
    processor = build_tiny_processor()
    processor.instruction_max_length = 6
    inputs = processor(text="what colour is the small circle on the right")
    words = processor.qformer_tokenizer.convert_ids_to_tokens(inputs["qformer_input_ids"][0])
    assert words == ["[CLS]", "circle", "on", "the", "right", "[SEP]"]


def test_processor_save_load_round_trip_gives_identical_outputs(tmp_path):
    processor = build_tiny_processor(num_query_tokens=3)
    processor.save_pretrained(tmp_path)
    reloaded = XLLMProcessor.from_pretrained(tmp_path)
    assert reloaded.num_query_tokens == {"image": 3, "video": 3}
    assert reloaded.chat_template == processor.chat_template
    assert reloaded.video_processor.num_frames == processor.video_processor.num_frames
    batch = dict(
        images=[random_image(0)], videos=[random_video(6)], text=["<image> <video> what ?", "describe it"]
    )
    expected, actual = processor(**batch), reloaded(**batch)
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name
    chat = [conversation(["red", "a circle"])]
    assert torch.equal(chat_inputs(reloaded, chat)["labels"], chat_inputs(processor, chat)["labels"])


def test_two_videos_in_one_sample_given_per_sample_are_two_videos(tiny_processor):
    videos = [[random_video(4, seed=1), random_video(4, seed=2)]]  # one sample, two (frames, H, W, 3) videos
    batch = tiny_processor(text=["<video> or <video> ?"], videos=videos)
    assert batch["pixel_values_videos"].shape[0] == 2
