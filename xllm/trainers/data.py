"""The stage-2/3 collator: manifest rows (chat `messages` + media columns) -> model inputs with labels."""

import torch
from transformers import BatchFeature, ProcessorMixin

from xllm.manifests import as_list, example_conversation
from xllm.processing.processor_modalities import MODALITIES


def shuffle_media_parts(conversation: list[dict]) -> list[dict]:
    """Permute the media parts of each user turn among their own positions; text stays in place."""
    shuffled = []
    for message in conversation:
        content = message["content"]
        if message["role"] == "user" and not isinstance(content, str):
            slots = [i for i, part in enumerate(content) if part.get("type") in MODALITIES]
            order = torch.randperm(len(slots)).tolist()
            content = list(content)
            for slot, source in zip(slots, order, strict=True):
                content[slot] = message["content"][slots[source]]
        shuffled.append({**message, "content": content})
    return shuffled


class XLLMDataCollator:
    """Examples (chat `messages` + media columns) -> model inputs with `labels` on assistant tokens.

    Everything goes through `processor.apply_chat_template`, so any modality the processor knows
    (any processor keyword) is batched the same way. Right padding: the loss ignores padding and
    positions follow the attention mask, but right padding keeps prompts aligned for debugging.

    `shuffle_modality_order=True` permutes the media parts of each user turn (X-InstructBLIP's
    stage-3 augmentation); it draws from torch's RNG, which `Trainer` seeds and checkpoints.

    `speech_transcript_column` names the column holding each speech item's transcript (a string, or
    one per item); the processor turns them into CIF's target lengths, so the model adds CIF's
    quantity loss (X-LLM's speech alignment).

    `feature_caches` (`feature_cache.FeatureCaches`) stand in for the media of the modalities they
    cache: their items come from the manifest as paths, and the batch carries their `encoder_features`
    instead of media tensors.
    """

    def __init__(
        self,
        processor: ProcessorMixin,
        padding_side: str = "right",
        shuffle_modality_order: bool = False,
        speech_transcript_column: str | None = None,
        feature_caches=None,
    ):
        if padding_side not in ("left", "right"):
            raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}.")
        if shuffle_modality_order and speech_transcript_column:
            raise ValueError(
                "`shuffle_modality_order` may reorder speech items and `speech_transcript_column` gives "
                "their transcripts in manifest order: set only one of them."
            )
        self.processor = processor
        self.padding_side = padding_side
        self.shuffle_modality_order = shuffle_modality_order
        self.speech_transcript_column = speech_transcript_column
        self.feature_caches = feature_caches

    def __call__(self, examples: list[dict]) -> BatchFeature:
        conversations = [example_conversation(example) for example in examples]
        if self.shuffle_modality_order:
            conversations = [shuffle_media_parts(conversation) for conversation in conversations]
        processor_kwargs = {"padding_side": self.padding_side}
        if self.speech_transcript_column:
            processor_kwargs["speech_transcripts"] = [
                transcript
                for example in examples
                for transcript in as_list(example.get(self.speech_transcript_column))
            ]
        encoder_features = {}
        if self.feature_caches is not None:
            conversations, windows, encoder_features = self.feature_caches.take_cached_media(conversations)
            processor_kwargs["precomputed_windows"] = windows
        batch = self.processor.apply_chat_template(
            conversations,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            processor_kwargs=processor_kwargs,
        )
        batch.pop("assistant_masks", None)
        if encoder_features:
            batch["encoder_features"] = encoder_features
        return batch


__all__ = ["XLLMDataCollator", "shuffle_media_parts"]
