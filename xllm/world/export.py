"""The synthetic world as manifests of the training format, with its media as files: data for the tiny
configs, the README's commands and anyone's first run of `xllm train` / `xllm evaluate`.

`export_manifests(world, output_dir)` writes, per modality (files named by processor keyword):

* `{keyword}.jsonl`: the train split, one captioning example per item (the item's caption
  instruction and caption; speech: its transcript, also in a `transcript` column);
* `{keyword}_qa.jsonl`: every (instruction, answer) pair of every train item (stage 3);
* `test/{keyword}.jsonl`: the test split, as captioning examples;
* `test/discrn_{first}_{second}.jsonl`: the cross-modal test pairs, the two media parts in question
  order, the question, and the answer (`first` / `second`) as the assistant turn;

and the media under `media/{modality}/` (the test split's under `test/media/{modality}/`, so that every
manifest reads only inside its own folder): PNG images, mp4 videos, wav audio, and point clouds as
coloured PLY clouds. Paths in the manifests are relative to the manifest.
"""

import json
from pathlib import Path

import numpy as np

from ..processing.processor_modalities import MODALITIES
from .vocabulary import MODALITIES as WORLD_MODALITIES

MEDIA_SUFFIXES = {"image": ".png", "video": ".mp4", "speech": ".wav", "audio": ".wav", "point_cloud": ".ply"}


def write_media(row: dict, modality: str, folder: Path) -> Path:
    """The item's media as a file in `folder` (the stored bytes, or the sampled cloud as a PLY)."""
    path = folder / f"{row['id']}{MEDIA_SUFFIXES[modality]}"
    if modality == "point_cloud":
        import trimesh

        points = np.asarray(row["point_cloud"], dtype=np.float64)  # (points, xyz + rgb in [0, 1])
        colours = np.round(points[:, 3:] * 255).astype(np.uint8)
        trimesh.PointCloud(points[:, :3], colors=colours).export(path)
    else:
        path.write_bytes(row[modality]["bytes"])
    return path


def one_turn(modality: str, instruction: str, answer: str) -> list[dict]:
    return [
        {"role": "user", "content": [{"type": modality}, {"type": "text", "text": " " + instruction}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def raw_media(dataset, modality: str):
    """The dataset with its media column undecoded (`{"path", "bytes"}`), except arrays."""
    if modality == "point_cloud":
        return dataset
    return dataset.cast_column(modality, type(dataset.features[modality])(decode=False))


def split_examples(dataset, modality: str, folder: Path, manifest_dir: Path) -> tuple[list[dict], list[dict]]:
    """(captioning examples, qa examples) of one split, its media written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    keyword = MODALITIES[modality].keyword
    captions, qa = [], []
    for row in raw_media(dataset, modality):
        media = str(write_media(row, modality, folder).relative_to(manifest_dir))
        first = row["qa"][0]  # the caption instruction and the caption (or transcript)
        example = {
            "id": row["id"],
            keyword: media,
            "messages": one_turn(modality, first["instruction"], first["answer"]),
        }
        if modality == "speech":
            example["transcript"] = row["transcript"]
        captions.append(example)
        for index, pair in enumerate(row["qa"]):
            qa.append(
                {
                    **example,
                    "id": f"{row['id']}-{index}",
                    "messages": one_turn(modality, pair["instruction"], pair["answer"]),
                }
            )
    return captions, qa


def discrn_examples(pairs, test_media: dict[str, dict[str, str]], manifest_dir: Path) -> list[dict]:
    """The cross-modal pairs, each medium the file written for its test item."""
    examples = []
    for pair in pairs:
        first = pair["first_modality"]
        second = next(m for m in WORLD_MODALITIES if f"{m}_id" in pair and m != first)
        content = [{"type": first}, {"type": second}, {"type": "text", "text": " " + pair["question"]}]
        example = {
            "id": pair["id"],
            "messages": [
                {"role": "user", "content": content},
                {"role": "assistant", "content": [{"type": "text", "text": pair["answer"]}]},
            ],
        }
        for modality in (first, second):
            path = Path(test_media[modality][pair[f"{modality}_id"]])
            example[MODALITIES[modality].keyword] = str(path.relative_to(manifest_dir))
        examples.append(example)
    return examples


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def export_manifests(world: dict, output_dir: str | Path) -> list[Path]:
    """Write the world's manifests and media into `output_dir` (see the module docstring); returns the
    manifest paths."""
    output_dir = Path(output_dir).resolve()
    test_dir = output_dir / "test"
    written = []
    test_media = {}
    for modality in WORLD_MODALITIES:
        keyword = MODALITIES[modality].keyword
        train_media, test_media_dir = output_dir / "media" / modality, test_dir / "media" / modality
        captions, qa = split_examples(world[modality]["train"], modality, train_media, output_dir)
        test, _ = split_examples(world[modality]["test"], modality, test_media_dir, test_dir)
        test_media[modality] = {e["id"]: test_dir / e[keyword] for e in test}
        for path, rows in (
            (output_dir / f"{keyword}.jsonl", captions),
            (output_dir / f"{keyword}_qa.jsonl", qa),
            (test_dir / f"{keyword}.jsonl", test),
        ):
            write_jsonl(path, rows)
            written.append(path)
    for name, pairs in world["discrn"].items():
        columns = [column for column in pairs.column_names if column not in WORLD_MODALITIES]
        path = test_dir / f"discrn_{name}.jsonl"
        write_jsonl(path, discrn_examples(pairs.select_columns(columns), test_media, test_dir))
        written.append(path)
    return written


__all__ = ["export_manifests"]
