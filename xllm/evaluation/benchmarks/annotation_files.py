"""Reading a benchmark's distributed annotation files: finding them under `--annotations`, parsing their JSON,
checking each record's keys and turning its media names into paths under `--media-dir`.

Every importer of `images.py` and `videos.py` reads its files through these functions, so that a wrong
root, a missing file or a malformed record stops the same way: a `ValueError` naming the file and what was
expected.
"""

import json
from pathlib import Path


def annotation_file(annotations: Path, name: str) -> Path:
    """The annotation file `name`: `annotations` itself when it is a file, else `annotations / name`."""
    annotations = Path(annotations)
    if annotations.is_file():
        return annotations
    if not annotations.exists():
        raise ValueError(
            f"--annotations {str(annotations)!r} does not exist; expected the file {name} or the folder holding it."
        )
    path = annotations / name
    if not path.is_file():
        present = sorted(child.name for child in annotations.iterdir())[:10]
        raise ValueError(
            f"--annotations folder {str(annotations)!r} has no {name} (the file this benchmark reads); it holds "
            f"{present or 'nothing'}."
        )
    return path


def annotation_files(annotations: Path, names: tuple[str, ...]) -> list[Path]:
    """Several files of one benchmark (VQA's questions and answers): all in the folder `annotations`."""
    annotations = Path(annotations)
    if annotations.is_file():
        raise ValueError(
            f"--annotations must be the folder holding {', '.join(names)} (this benchmark reads {len(names)} "
            f"files), got the file {str(annotations)!r}."
        )
    return [annotation_file(annotations, name) for name in names]


def read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"The annotation file {str(path)!r} is not valid JSON: {error}.") from error


def json_records(path: Path, key: str | None = None) -> list[dict]:
    """The list of records of a JSON file: the file's top level, or its `key` entry (COCO-style files)."""
    content = read_json(path)
    if key is not None:
        if not isinstance(content, dict) or key not in content:
            found = sorted(content) if isinstance(content, dict) else type(content).__name__
            raise ValueError(
                f"The annotation file {str(path)!r} must be an object with a {key!r} list; got {found}."
            )
        content = content[key]
    if not isinstance(content, list) or not all(isinstance(record, dict) for record in content):
        raise ValueError(
            f"The annotation file {str(path)!r} must hold a list of records (objects), got {type(content).__name__}."
        )
    if not content:
        raise ValueError(f"The annotation file {str(path)!r} holds no records.")
    return content


def require(record: dict, keys: tuple[str, ...], path: Path, index: int | str) -> None:
    """Refuse a record that lacks one of `keys`, naming the file, the record and what it has."""
    missing = [key for key in keys if key not in record]
    if missing:
        raise ValueError(
            f"Record {index} of {str(path)!r} lacks {missing}; this benchmark reads {list(keys)}, the record has "
            f"{sorted(record)}."
        )


def media_path(media_dir: Path, name: str) -> str:
    """The absolute path of the media file `name` (relative, as annotation files write it) under `media_dir`;
    a name that is absolute or climbs out with `..` is refused (an annotation file must not read anywhere)."""
    relative = Path(str(name))
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"Media name {name!r} must be relative to --media-dir, without '..'.")
    return str((Path(media_dir) / relative).absolute())


def captions_of(value: object, path: Path, index: int | str) -> list[str]:
    """A record's caption field: one caption or a list of them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(caption, str) for caption in value):
        return list(value)
    raise ValueError(
        f"Record {index} of {str(path)!r}: a caption must be a string or a list of strings, got {value!r}."
    )


def grouped_captions(
    records: list[dict], media_key: str, caption_key: str, path: Path
) -> dict[str, list[str]]:
    """Every caption of each media file, in file order: files list one record per media file with all its
    captions (COCO Karpathy test) or one record per caption (MSR-VTT); both give the same references."""
    captions: dict[str, list[str]] = {}
    for index, record in enumerate(records):
        require(record, (media_key, caption_key), path, index)
        captions.setdefault(str(record[media_key]), []).extend(captions_of(record[caption_key], path, index))
    return captions


__all__ = [
    "annotation_file",
    "annotation_files",
    "captions_of",
    "grouped_captions",
    "json_records",
    "media_path",
    "read_json",
    "require",
]
