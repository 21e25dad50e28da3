"""Training data: local manifests as `datasets` objects, mixing with ratios, and one collator.

A manifest is a JSONL, CSV or Parquet file with one example per row:

* `messages`: the chat (a list of turns; in CSV, the same list written as a JSON string). A media
  part is written `{"type": "image"}` and takes the next item of the row's media column;
* or, instead of `messages`, `prompt` and `response` columns (one user turn, one answer);
* one media column per processor keyword (`images`, `videos`, `speech`, `audio`, `point_clouds`)
  holding a path, or a list of paths, relative to the manifest's folder.

Media columns are cast to `datasets` features (`Image`, `Video`, `Audio`, `Mesh`), so decoding is
lazy and streaming works the same way as in memory.
"""

import json
from pathlib import Path

import datasets
import torch
from datasets import Features, interleave_datasets, load_dataset
from transformers import BatchFeature, ProcessorMixin

# Chat content type -> (processor keyword = manifest column, `datasets` feature that decodes it).
MEDIA_COLUMNS = {
    "image": ("images", datasets.Image),
    "video": ("videos", datasets.Video),
    "speech": ("speech", datasets.Audio),
    "audio": ("audio", datasets.Audio),
    "point_cloud": ("point_clouds", datasets.Mesh),
}
MANIFEST_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def resolve_media_path(path: str, root: Path, allow_outside_root: bool) -> str:
    """An absolute path for a manifest entry; entries that escape the manifest's folder are refused
    unless allowed (a manifest from elsewhere must not read arbitrary files)."""
    resolved = (root / path).resolve()
    if not allow_outside_root and not resolved.is_relative_to(root):
        raise ValueError(
            f"Manifest media path {path!r} resolves to {resolved}, outside the manifest folder {root}; "
            "pass `allow_outside_root=True` to allow it."
        )
    return str(resolved)


def _resolve_row(row: dict, columns: list[str], root: Path, allow_outside_root: bool) -> dict:
    """Media paths -> `{"path", "bytes"}` records, the storage every `datasets` media feature casts from."""

    def record(path: str) -> dict:
        return {"path": resolve_media_path(path, root, allow_outside_root), "bytes": None}

    resolved = {}
    for column in columns:
        value = row[column]
        if isinstance(value, list):
            resolved[column] = [record(path) for path in value]
        elif value is not None:
            resolved[column] = record(value)
    return resolved


def load_manifest(
    path: str | Path, streaming: bool = False, allow_outside_root: bool = False
) -> datasets.Dataset | datasets.IterableDataset:
    """Load a JSONL/CSV/Parquet manifest; media columns become decoded `datasets` features.

    With `streaming=True` the result is an `IterableDataset`: the manifest (paths only) is read
    at once, the media are decoded one example at a time as training consumes them. Sources that
    are too large for that (Hub datasets) are loaded with `datasets.load_dataset(..., streaming=True)`
    and mixed with `mix_datasets` all the same.
    """
    path = Path(path)
    builder = MANIFEST_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(f"`path` must end with one of {sorted(MANIFEST_BUILDERS)}, got {path.name!r}.")
    dataset = load_dataset(builder, data_files=str(path), split="train")
    root = path.parent.resolve()
    media_columns = [keyword for keyword, _ in MEDIA_COLUMNS.values() if keyword in dataset.column_names]
    first_row = dataset[0]
    dataset = dataset.map(
        _resolve_row, fn_kwargs=dict(columns=media_columns, root=root, allow_outside_root=allow_outside_root)
    )
    for keyword, feature in MEDIA_COLUMNS.values():
        if keyword in media_columns:
            dataset = dataset.cast_column(
                keyword, datasets.List(feature()) if isinstance(first_row[keyword], list) else feature()
            )
    return dataset.to_iterable_dataset() if streaming else dataset


def _add_missing_columns(dataset, features: Features):
    """Give `dataset` every column of `features` (missing ones empty) so sources can be interleaved."""
    missing = [name for name in features if name not in dataset.column_names]
    if not missing:
        return dataset
    return dataset.map(
        lambda _: {name: None for name in missing},
        features=Features({**dataset.features, **{n: features[n] for n in missing}}),
    )


def mix_datasets(
    sources: list, ratios: list[float] | None = None, seed: int = 0, stopping_strategy: str = "all_exhausted"
):
    """Interleave several sources, drawing from each with probability proportional to its ratio.

    Sources may hold different media columns (an image set and a video set); each gets the others'
    columns, empty, so that `interleave_datasets` can join them.
    """
    if not sources:
        raise ValueError("`sources` must hold at least one dataset, got none.")
    if ratios is None:
        ratios = [1.0] * len(sources)
    if len(ratios) != len(sources) or any(r <= 0 for r in ratios):
        raise ValueError(f"`ratios` must be {len(sources)} positive numbers (one per source), got {ratios}.")
    if len(sources) == 1:
        return sources[0]
    features = Features()
    for source in sources:
        features.update({name: feature for name, feature in source.features.items() if name not in features})
    aligned = [_add_missing_columns(source, features) for source in sources]
    total = sum(ratios)
    return interleave_datasets(
        aligned, probabilities=[r / total for r in ratios], seed=seed, stopping_strategy=stopping_strategy
    )


def example_conversation(example: dict) -> list[dict]:
    """The chat of one example with each media part holding its media item (taken in order from the
    example's media column)."""
    messages = example.get("messages")
    if isinstance(messages, str):
        messages = json.loads(messages)
    if messages is None:
        if example.get("prompt") is None or example.get("response") is None:
            raise ValueError(
                f"An example needs `messages` or `prompt` + `response`; got columns {sorted(example)}."
            )
        messages = [
            {"role": "user", "content": [{"type": "text", "text": example["prompt"]}]},
            {"role": "assistant", "content": [{"type": "text", "text": example["response"]}]},
        ]
        for content_type in reversed(MEDIA_COLUMNS):
            items = example.get(MEDIA_COLUMNS[content_type][0])
            count = 0 if items is None else len(items) if isinstance(items, list) else 1
            messages[0]["content"][:0] = [{"type": content_type}] * count
    pending = {t: _as_list(example.get(keyword)) for t, (keyword, _) in MEDIA_COLUMNS.items()}
    conversation = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            content = [_with_media(part, pending) for part in content]
        conversation.append({"role": message["role"], "content": content})
    leftover = {t: len(items) for t, items in pending.items() if items}
    if leftover:
        raise ValueError(f"An example has more media than media parts in its messages: {leftover} unused.")
    return conversation


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _with_media(part: dict, pending: dict[str, list]) -> dict:
    content_type = part.get("type")
    if content_type not in pending or content_type in part:
        return dict(part)
    if not pending[content_type]:
        raise ValueError(
            f"A message has a {content_type!r} part but the example has no {content_type} left for it."
        )
    return {**part, content_type: _decoded(pending[content_type].pop(0))}


def _decoded(media):
    """Media as the processor takes them: a `datasets.Video` decoder becomes its frames (T, H, W, C)."""
    if hasattr(media, "get_frames_in_range"):  # torchcodec VideoDecoder
        return media.get_frames_in_range(0, len(media)).data.permute(0, 2, 3, 1).numpy()
    return media


def shuffle_media_parts(conversation: list[dict]) -> list[dict]:
    """Permute the media parts of each user turn among their own positions; text stays in place."""
    shuffled = []
    for message in conversation:
        content = message["content"]
        if message["role"] == "user" and not isinstance(content, str):
            slots = [i for i, part in enumerate(content) if part.get("type") in MEDIA_COLUMNS]
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
    """

    def __init__(
        self,
        processor: ProcessorMixin,
        padding_side: str = "right",
        shuffle_modality_order: bool = False,
        speech_transcript_column: str | None = None,
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

    def __call__(self, examples: list[dict]) -> BatchFeature:
        conversations = [example_conversation(example) for example in examples]
        if self.shuffle_modality_order:
            conversations = [shuffle_media_parts(conversation) for conversation in conversations]
        processor_kwargs = {"padding_side": self.padding_side}
        if self.speech_transcript_column:
            processor_kwargs["speech_transcripts"] = [
                transcript
                for example in examples
                for transcript in _as_list(example.get(self.speech_transcript_column))
            ]
        batch = self.processor.apply_chat_template(
            conversations,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            processor_kwargs=processor_kwargs,
        )
        batch.pop("assistant_masks", None)
        return batch


__all__ = [
    "MEDIA_COLUMNS",
    "XLLMDataCollator",
    "example_conversation",
    "load_manifest",
    "mix_datasets",
    "shuffle_media_parts",
]
