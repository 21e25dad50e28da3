"""Reading a benchmark's distributed annotation tables (CSV files, one-record-per-line text files) with the
same errors as `annotation_files.py`: a `ValueError` naming the file and what was expected.

The audio, 3D and speech importers read their files through these functions.
"""

import csv
from pathlib import Path


def csv_records(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line, as dicts; every one of `columns` must be in the header
    (LAVIS reads these files with `pandas.read_csv`, header included: lavis/datasets/datasets/base_dataset.py:28-30)."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [column for column in columns if column not in header]
            if missing:
                raise ValueError(
                    f"The annotation file {str(path)!r} must be a CSV file whose header has the columns "
                    f"{list(columns)}; it lacks {missing} (header: {header})."
                )
            records = list(reader)
    except UnicodeDecodeError as error:
        raise ValueError(f"The annotation file {str(path)!r} is not UTF-8 text: {error}.") from error
    except csv.Error as error:
        raise ValueError(f"The annotation file {str(path)!r} is not valid CSV: {error}.") from error
    for index, record in enumerate(records):
        empty = [column for column in columns if not (record.get(column) or "").strip()]
        if empty:
            raise ValueError(
                f"Row {index + 2} of {str(path)!r} has no value in {empty}; this benchmark reads {list(columns)}."
            )
    if not records:
        raise ValueError(f"The annotation file {str(path)!r} holds no rows below its header.")
    return records


def text_lines(path: Path) -> list[str]:
    """The non-empty lines of a text file, stripped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"The annotation file {str(path)!r} is not UTF-8 text: {error}.") from error
    lines = [line.strip() for line in lines if line.strip()]
    if not lines:
        raise ValueError(f"The annotation file {str(path)!r} is empty.")
    return lines


def keyed_lines(path: Path, what: str) -> list[tuple[str, str]]:
    """(key, text) of every line `KEY TEXT...` (space or tab after the key) of a transcript file (LibriSpeech `*.trans.txt`, AISHELL's
    transcript); a line without text is refused, naming the line."""
    pairs = []
    for number, line in enumerate(text_lines(path), start=1):
        key, *text = line.split(maxsplit=1)
        if not text:
            raise ValueError(f"Line {number} of {str(path)!r} must be `{what}`, got {line!r}.")
        pairs.append((key, text[0]))
    return pairs


__all__ = ["csv_records", "keyed_lines", "text_lines"]
