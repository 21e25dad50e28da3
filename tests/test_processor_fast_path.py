"""The processor's fast text path: it remembers `_merge_kwargs` per set of call options
(`merged_options_xllm`), and a remembered merge must be exactly transformers' merge, whatever the options,
and never go stale; placeholders are found without a Python scan of every token."""

import copy

import numpy as np
import pytest
import torch
from transformers import BlipImageProcessor
from transformers.processing_utils import ProcessorMixin

OPTION_SETS = [
    {},
    {"return_tensors": "pt"},
    {"padding": "max_length", "max_length": 24, "truncation": True},
    {"text_kwargs": {"padding": "longest"}, "images_kwargs": {"do_resize": False}},
    {"common_kwargs": {"return_tensors": "pt"}},
    {"videos_kwargs": {"num_frames": 2}, "audio_kwargs": {"max_windows": 3}},
    {"rescale_factor": 0.5, "padding_side": "right"},
]


@pytest.fixture
def processor(tiny_processor):
    processor = copy.deepcopy(tiny_processor)
    processor.__dict__.pop("_merged_options", None)  # a memo of its own, empty whatever ran before
    return processor


def transformers_merge(processor, tokenizer_defaults=None, **options):
    return ProcessorMixin._merge_kwargs(
        processor, processor.valid_processor_kwargs, tokenizer_defaults, **options
    )


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda options: ",".join(options) or "none")
def test_a_remembered_merge_is_transformers_merge(processor, options):
    expected = transformers_merge(processor, {"padding": False}, **options)
    first = processor._merge_kwargs(processor.valid_processor_kwargs, {"padding": False}, **options)
    second = processor._merge_kwargs(processor.valid_processor_kwargs, {"padding": False}, **options)
    assert first == expected and second == expected
    assert len(processor._merged_options) == 1


def test_what_a_caller_does_to_its_options_does_not_reach_the_next_call(processor):
    options = processor._merge_kwargs(processor.valid_processor_kwargs, videos_kwargs={"num_frames": 2})
    options["videos_kwargs"].pop("num_frames")
    options["text_kwargs"]["padding"] = "max_length"
    again = processor._merge_kwargs(processor.valid_processor_kwargs, videos_kwargs={"num_frames": 2})
    assert again == transformers_merge(processor, videos_kwargs={"num_frames": 2})
    assert again["videos_kwargs"]["num_frames"] == 2


def test_an_option_given_twice_is_refused_on_every_call(processor):
    for _ in range(2):
        with pytest.raises(ValueError, match="passed two times"):
            processor._merge_kwargs(
                processor.valid_processor_kwargs, padding="longest", text_kwargs={"padding": "longest"}
            )
    assert not processor.__dict__.get("_merged_options")


def test_other_tokenizer_defaults_merge_afresh(processor):
    short = processor._merge_kwargs(processor.valid_processor_kwargs, {"max_length": 8})
    long = processor._merge_kwargs(processor.valid_processor_kwargs, {"max_length": 16})
    assert short["text_kwargs"]["max_length"] == 8 and long["text_kwargs"]["max_length"] == 16
    assert long == transformers_merge(processor, {"max_length": 16})


def test_a_sub_processor_with_other_options_is_seen(processor):
    class WiderImagesKwargs(BlipImageProcessor.valid_kwargs, total=False):
        sharpen: bool

    before = processor._merge_kwargs(processor.valid_processor_kwargs, sharpen=True)
    assert "sharpen" not in before["images_kwargs"]  # no option table names it: ignored, as transformers does
    processor.image_processor = BlipImageProcessor(size={"height": 16, "width": 16})
    processor.image_processor.valid_kwargs = WiderImagesKwargs
    after = processor._merge_kwargs(processor.valid_processor_kwargs, sharpen=True)
    assert after == transformers_merge(processor, sharpen=True) and after["images_kwargs"]["sharpen"] is True
    assert len(processor._merged_options) == 2


def test_a_sub_processor_with_the_same_options_shares_the_merge(processor):
    before = processor._merge_kwargs(processor.valid_processor_kwargs, images_kwargs={"do_resize": False})
    processor.image_processor = BlipImageProcessor(size={"height": 16, "width": 16})
    after = processor._merge_kwargs(processor.valid_processor_kwargs, images_kwargs={"do_resize": False})
    assert after == before == transformers_merge(processor, images_kwargs={"do_resize": False})
    assert len(processor._merged_options) == 1  # the merge reads the option table, not the sizes


def test_a_copied_processor_merges_as_transformers_does(processor):
    processor._merge_kwargs(processor.valid_processor_kwargs, videos_kwargs={"num_frames": 2})
    copied = copy.deepcopy(processor)
    options = copied._merge_kwargs(copied.valid_processor_kwargs, videos_kwargs={"num_frames": 2})
    assert options == transformers_merge(copied, videos_kwargs={"num_frames": 2})


def test_an_option_that_cannot_be_compared_is_merged_every_time(processor):
    device = torch.device("cpu")  # not a plain value: no key can stand for it
    options = processor._merge_kwargs(processor.valid_processor_kwargs, images_kwargs={"device": device})
    assert options == transformers_merge(processor, images_kwargs={"device": device})
    assert not processor.__dict__.get("_merged_options")


def test_a_processor_call_gives_the_same_inputs_from_a_remembered_merge(processor, image):
    first = processor(images=[image], text=["<image> what is it ?"], padding="max_length", max_length=40)
    second = processor(images=[image], text=["<image> what is it ?"], padding="max_length", max_length=40)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert first["input_ids"].shape[1] == 40


def test_placeholder_positions_finds_every_placeholder_in_order():
    from xllm.processing.processing_xllm import placeholder_positions

    placeholders = {7: "image", 9: "video"}
    assert placeholder_positions([1, 7, 2, 9, 7, 7, 3], placeholders) == [1, 3, 4, 5]
    assert placeholder_positions([1, 2, 3], placeholders) == []
    assert placeholder_positions([], placeholders) == []


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_token_rows_come_as_the_asked_int64_tensors_with_the_values_of_the_lists(processor, return_tensors):
    texts = ["<image> describe it", "<image> what colour is the object , in a few words ?"]
    instructions = ["describe it", "what colour is the object ?"]
    images = [np.zeros((32, 32, 3), dtype=np.uint8)] * 2
    lists = processor(images=images, text=texts, instructions=instructions, return_tensors=None)
    tensors = processor(images=images, text=texts, instructions=instructions, return_tensors=return_tensors)
    expected_type = torch.Tensor if return_tensors == "pt" else np.ndarray
    for name in ("input_ids", "attention_mask", "qformer_input_ids", "qformer_attention_mask"):
        assert isinstance(tensors[name], expected_type) and str(tensors[name].dtype).endswith("int64"), name
        assert tensors[name].tolist() == lists[name], name
