"""transformers pipelines for X-LLM that batch several inputs into one `generate` call.

The stock `pipeline("any-to-any", model=folder)` and `pipeline("image-text-to-text", model=folder)` already
run X-LLM models on every modality one input at a time: chat messages go through
`XLLMProcessor.apply_chat_template`, which reads the content types image, video, speech, audio and
point_cloud, and the processor routes the non-chat `audio=` stream (to the speech interface when the
model has one and no audio interface, otherwise to the audio interface).

What the stock pipelines get wrong is `batch_size > 1`: their collate function pads every tensor on the
tokenizer's side (speech frames would be padded on the left, input ids on the right), which silently
changes the answers. These subclasses replace only the collate function:

    from transformers import pipeline
    from xllm.pipelines import XLLMAnyToAnyPipeline

    pipe = pipeline("any-to-any", model=folder, pipeline_class=XLLMAnyToAnyPipeline, batch_size=8)
"""

from collections.abc import Sized

import torch
from torch.utils.data import DataLoader
from transformers import AnyToAnyPipeline, ImageTextToTextPipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from xllm.processing.processor_modalities import MODALITIES

# Padded on the processor's side (left for generation); every other tensor is padded on the right.
TEXT_INPUTS = ("input_ids", "attention_mask")


def pad_and_concatenate(tensors: list[torch.Tensor], fill: float, side: str) -> torch.Tensor:
    """Concatenate along dim 0, padding dim 1 (tokens, frames or windows) to the longest with `fill`."""
    if tensors[0].ndim < 2:
        return torch.cat(tensors)
    longest = max(tensor.shape[1] for tensor in tensors)
    padded = []
    for tensor in tensors:
        out = tensor.new_full((tensor.shape[0], longest, *tensor.shape[2:]), fill)
        if side == "left":
            out[:, longest - tensor.shape[1] :] = tensor
        else:
            out[:, : tensor.shape[1]] = tensor
        padded.append(out)
    return torch.cat(padded)


class XLLMBatchCollation:
    """Pipeline mixin: batches preprocessed inputs the way `XLLMProcessor` batches them itself.

    Text is padded on the processor's `padding_side`; Q-Former instructions, speech frames and audio
    windows on the right. Media tensors hold one row per item (image, video, clip, cloud), in the
    order of their placeholders, so the rows of consecutive inputs are concatenated, and inputs with
    different media (an image here, speech there) share one batch.
    """

    def get_iterator(
        self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params, postprocess_params
    ):
        if batch_size == 1:
            return super().get_iterator(
                inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params
            )
        dataset_class = PipelineDataset if isinstance(inputs, Sized) else PipelineIterator
        dataset = dataset_class(inputs, self.preprocess, preprocess_params)
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=self.collate)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def collate(self, items: list[dict]) -> dict:
        """One batch from preprocessed inputs; non-tensor entries (the prompts) become lists."""
        batch = {}
        for key in dict.fromkeys(key for item in items for key in item):
            values = [item[key] for item in items if key in item]
            if not isinstance(values[0], torch.Tensor):
                batch[key] = values
                continue
            side = self.processor.padding_side if key in TEXT_INPUTS else "right"
            batch[key] = pad_and_concatenate(values, self.padding_value(key), side)
        return batch

    def padding_value(self, key: str) -> float:
        """What the processor pads `key` with: pad ids for token ids, the extractor's value for the
        features of variable-length media (speech), zero for masks, windows and everything else."""
        if key == "input_ids":
            tokenizer = self.processor.tokenizer
            return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if key == "qformer_input_ids":
            return self.processor.qformer_tokenizer.pad_token_id
        for row in MODALITIES.values():
            if row.layout == "sequence" and key == row.outputs[0]:
                return getattr(getattr(self.processor, row.sub_processor), "padding_value", 0.0)
        return 0


class XLLMAnyToAnyPipeline(XLLMBatchCollation, AnyToAnyPipeline):
    """`AnyToAnyPipeline` for X-LLM models, correct with `batch_size > 1`."""


class XLLMImageTextToTextPipeline(XLLMBatchCollation, ImageTextToTextPipeline):
    """`ImageTextToTextPipeline` for X-LLM models, correct with `batch_size > 1`."""


__all__ = ["XLLMAnyToAnyPipeline", "XLLMImageTextToTextPipeline"]
