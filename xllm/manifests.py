"""The one data path: manifests of media and chats, loaded as `datasets` objects, their rows as chats.

Training (every stage), evaluation, the DisCRn builder, query augmentation and the demo all read this
format.

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
from typing import TYPE_CHECKING

from xllm.processing.processor_modalities import MODALITIES

if TYPE_CHECKING:
    import datasets

# `datasets` is imported inside the functions that load: the command line imports this module for its
# help text, which must not wait for `datasets` (and torch) to import.


def media_columns() -> dict[str, tuple[str, type]]:
    """Chat content type -> (processor keyword = manifest column, `datasets` feature that decodes it)."""
    import datasets

    return {m: (row.keyword, getattr(datasets, row.datasets_feature)) for m, row in MODALITIES.items()}


def media_keywords() -> dict[str, str]:
    """Chat content type -> processor keyword (= manifest column)."""
    return {m: row.keyword for m, row in MODALITIES.items()}


MANIFEST_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def confined_path(path: str, root: Path) -> Path | None:
    """`path` (relative to `root`, or absolute) with every symlink and `..` resolved; None when that lands
    outside the resolved `root`. Manifests and the server's `--media-root` read files by this rule."""
    root = root.resolve()
    resolved = (root / path).resolve()
    return resolved if resolved.is_relative_to(root) else None


def resolve_media_path(path: str, root: Path, allow_outside_root: bool) -> str:
    """An absolute path for a manifest entry; entries that escape the manifest's folder are refused
    unless allowed (a manifest from elsewhere must not read arbitrary files)."""
    resolved = (root / path).resolve()
    if not allow_outside_root and confined_path(path, root) is None:
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
    path: str | Path,
    streaming: bool = False,
    allow_outside_root: bool = False,
    limit: int | None = None,
    name: str = "path",
    decode: bool = True,
    undecoded: tuple[str, ...] = (),
) -> "datasets.Dataset | datasets.IterableDataset":
    """Load a JSONL/CSV/Parquet manifest; media columns become decoded `datasets` features.

    With `streaming=True` the result is an `IterableDataset`: the manifest (paths only) is read
    at once, the media are decoded one example at a time as training consumes them. Sources that
    are too large for that (Hub datasets) are loaded with `datasets.load_dataset(..., streaming=True)`
    and mixed with `mix_datasets` all the same. `limit` keeps the first rows only; `decode=False` leaves
    media as `{"path", "bytes"}` records (absolute paths) for tools that copy paths, `undecoded` does so for
    the named media columns only (those a feature cache stands in for). A missing, unreadable
    or empty manifest is a ValueError that names it and the argument or config key it came from (`name`).
    """
    import datasets

    path = Path(path)
    builder = MANIFEST_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(f"`{name}` must end with one of {sorted(MANIFEST_BUILDERS)}, got {str(path)!r}.")
    if not path.is_file():
        raise ValueError(
            f"`{name}` names the manifest {str(path)!r}, which does not exist. (`xllm world export DIR` writes "
            "manifests of every modality.)"
        )
    if limit is not None and limit < 1:
        raise ValueError(f"`limit` must be a positive number of rows, got {limit}.")
    try:
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as error:  # datasets raises builder-specific errors for unreadable files
        raise ValueError(
            f"`{name}`: the manifest {str(path)!r} cannot be read as {builder} ({error})."
        ) from error
    if len(dataset) == 0:
        raise ValueError(f"`{name}`: the manifest {str(path)!r} has no rows.")
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    root = path.parent.resolve()
    columns = {
        keyword: feature for keyword, feature in media_columns().values() if keyword in dataset.column_names
    }
    first_row = dataset[0]
    dataset = dataset.map(
        _resolve_row, fn_kwargs=dict(columns=list(columns), root=root, allow_outside_root=allow_outside_root)
    )
    for keyword, feature in columns.items():
        typed = feature(decode=decode and keyword not in undecoded)
        dataset = dataset.cast_column(
            keyword, datasets.List(typed) if isinstance(first_row[keyword], list) else typed
        )
    return dataset.to_iterable_dataset() if streaming else dataset


def _add_missing_columns(dataset, features: "datasets.Features"):
    """Give `dataset` every column of `features` (missing ones empty) so sources can be interleaved."""
    missing = [name for name in features if name not in dataset.column_names]
    if not missing:
        return dataset
    return dataset.map(
        lambda _: {name: None for name in missing},
        features=features.__class__({**dataset.features, **{n: features[n] for n in missing}}),
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
    import datasets

    features = datasets.Features()
    for source in sources:
        features.update({name: feature for name, feature in source.features.items() if name not in features})
    aligned = [_add_missing_columns(source, features) for source in sources]
    total = sum(ratios)
    return datasets.interleave_datasets(
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
        for content_type, keyword in reversed(media_keywords().items()):
            items = example.get(keyword)
            count = 0 if items is None else len(items) if isinstance(items, list) else 1
            messages[0]["content"][:0] = [{"type": content_type}] * count
    pending = {t: as_list(example.get(keyword)) for t, keyword in media_keywords().items()}
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


def example_answer(example: dict, column: str = "response") -> str:
    """The answer of an example (a caption, a transcript): its `column`, else the text of the last
    assistant turn of its chat, so every manifest of the training format serves every stage and task."""
    if example.get(column) is not None:
        return example[column]
    messages = example.get("messages")
    if isinstance(messages, str):
        messages = json.loads(messages)
    answers = [message for message in messages or () if message["role"] == "assistant"]
    if not answers:
        raise ValueError(f"An example needs a {column!r} column or an assistant turn; got {sorted(example)}.")
    content = answers[-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content if part.get("type") == "text")


def as_list(value) -> list:
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
    return {**part, content_type: decoded_media(pending[content_type].pop(0))}


def decoded_media(media):
    """Media as the processor takes them: a `datasets.Video` decoder becomes its frames (T, H, W, C)."""
    if hasattr(media, "get_frames_in_range"):  # torchcodec VideoDecoder
        return media.get_frames_in_range(0, len(media)).data.permute(0, 2, 3, 1).numpy()
    return media


__all__ = [
    "decoded_media",
    "example_answer",
    "example_conversation",
    "as_list",
    "load_manifest",
    "media_keywords",
    "media_columns",
    "mix_datasets",
    "resolve_media_path",
]
