"""Importers of DisCRn (audio-video, image-3D) on the schema of LAVIS's released JSON: media per entity,
LAVIS's label balancing with the entities moved along, LAVIS's skip rule, malformed records named."""

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_layouts.audio import write_file
from benchmark_layouts.discrn import AUDIO_VIDEO_RECORDS, IMAGE_3D_RECORDS, LAYOUTS, record
from benchmark_rows import fake_generate

from xllm.evaluation.benchmarks.benchmark import ImportOptions
from xllm.evaluation.benchmarks.discrn import BENCHMARKS
from xllm.evaluation.discrn import discrn_task
from xllm.evaluation.runner import evaluate_examples

NAMED = {benchmark.name: benchmark for benchmark in BENCHMARKS}
OPTIONS = ImportOptions()


def imported(name, tmp_path):
    annotations, media = LAYOUTS[name](tmp_path)
    return NAMED[name].read(annotations, media, OPTIONS), media


def test_audio_video_rows_show_the_audio_of_one_clip_and_the_video_of_another(tmp_path):
    rows, media = imported("discrn_audio_video", tmp_path)
    assert rows[1] == {
        "id": "1",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "audio"},
                    {"type": "video"},
                    {"type": "text", "text": "Which entity moves faster?"},
                ],
            }
        ],
        "audio": str(media / "audio" / "-1nRJqBTnbs_7.flac"),
        "videos": str(media / "video" / "0AaAgCDzAI8_12.mp4"),
        "label": "first",
    }


def entity_of(path: str) -> str:
    """The entity a DisCRn medium shows: its AudioCaps YouTube id or Objaverse id."""
    name = Path(path).name
    return name.rsplit("_", 1)[0] if name.endswith((".flac", ".mp4", ".jpeg")) else Path(path).parent.name


@pytest.mark.parametrize(
    ("name", "records", "columns"),
    [
        ("discrn_audio_video", AUDIO_VIDEO_RECORDS, ("audio", "videos")),
        ("discrn_image_3d", IMAGE_3D_RECORDS, ("images", "point_clouds")),
    ],
)
def test_labels_are_balanced_as_lavis_balances_them_and_name_the_input_of_the_answering_entity(
    name, records, columns, tmp_path
):
    rows, _ = imported(name, tmp_path)
    # LAVIS flips every label equal to its index's parity (discriminatory_reasoning_datasets.py:113-115):
    # even items end "second", odd ones "first".
    assert [row["label"] for row in rows] == ["second", "first", "second"][: len(records)]
    for row, source in zip(rows, records, strict=True):
        answering = source["sample_ids"][source["label"]]
        position = ("first", "second").index(row["label"])
        assert entity_of(row[columns[position]]) == answering
        assert {entity_of(row[column]) for column in columns} == set(source["sample_ids"])


def test_image_3d_rows_read_cap3d_renders_and_npz_clouds_through_the_decode_hook(tmp_path):
    rows, media = imported("discrn_image_3d", tmp_path)
    first, second = "ed51a51909ee46c780db3a85e821feb2", "0a8a29b1ac5f4bc8aa6e2b7b3e5a1d6c"
    assert rows[0]["images"] == str(
        media / "images/compressed_imgs_view2/Cap3D_imgs_view2" / f"{first}_2.jpeg"
    )
    assert rows[0]["point_clouds"] == str(media / "pc" / second / f"{second}_8192.npz")
    decode = NAMED["discrn_image_3d"].decode
    assert decode(rows[0]["images"], OPTIONS).size == (24, 24)
    assert np.asarray(decode(rows[0]["point_clouds"], OPTIONS)).shape == (64, 6)
    corrupt = write_file(tmp_path / "broken.jpeg", b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpeg"):
        decode(str(corrupt), OPTIONS)


def test_records_without_the_baseline_caption_of_their_input_are_skipped_as_lavis_skips_them(tmp_path):
    records = [
        record(["a", "b"], "Which entity is louder?", 0, ("audio", "video"), start_seconds=[0, 0]),
        {
            **record(["c", "d"], "Which is faster?", 1, ("audio", "video"), start_seconds=[0, 0]),
            "captions_pred_video": [None, None],
        },
        {**record(["e", "f"], "Which is wet?", 1, ("audio",), start_seconds=[1, 2])},
    ]
    annotations = write_file(tmp_path / "audiocaps.json", json.dumps(records).encode())
    rows = NAMED["discrn_audio_video"].read(annotations, tmp_path, OPTIONS)
    assert [row["id"] for row in rows] == ["0", "2"]  # ids stay the records' indices


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label": 2}, "label must be 0 or 1"),
        ({"sample_ids": ["a"]}, "'sample_ids' must list the two entities"),
        ({"question": ""}, "question must be a non-empty string"),
        ({"start_seconds": None}, "'start_seconds' must list the two entities"),
    ],
)
def test_malformed_records_name_the_file_the_record_and_what_was_expected(change, message, tmp_path):
    records = [{**record(["a", "b"], "Which?", 0, ("audio", "video"), start_seconds=[0, 0]), **change}]
    annotations = write_file(tmp_path / "audiocaps.json", json.dumps(records).encode())
    with pytest.raises(ValueError, match=rf"Record 0 of .*audiocaps.json.*{message}"):
        NAMED["discrn_audio_video"].read(annotations, tmp_path, OPTIONS)


def test_wrong_root_missing_keys_and_a_non_list_file_are_named(tmp_path):
    with pytest.raises(ValueError, match="has no objaverse.json"):
        NAMED["discrn_image_3d"].read(tmp_path, tmp_path, OPTIONS)
    keyless = write_file(
        tmp_path / "a" / "audiocaps.json", json.dumps([{"sample_ids": ["a", "b"], "label": 0}]).encode()
    )
    with pytest.raises(ValueError, match=r"Record 0 of .* lacks \['start_seconds', 'question'\]"):
        NAMED["discrn_audio_video"].read(keyless, tmp_path, OPTIONS)
    an_object = write_file(tmp_path / "b" / "objaverse.json", b'{"data": []}')
    with pytest.raises(ValueError, match="must hold a list of records"):
        NAMED["discrn_image_3d"].read(an_object, tmp_path, OPTIONS)


@pytest.mark.parametrize("name", ["discrn_audio_video", "discrn_image_3d"])
def test_discrn_rows_are_scored_by_the_discrn_task_in_the_published_order(name, tmp_path):
    rows, _ = imported(name, tmp_path)
    columns = {"discrn_audio_video": ("audio", "videos"), "discrn_image_3d": ("images", "point_clouds")}[name]
    truth = {tuple(Path(row[column]).name for column in columns): row["label"] for row in rows}
    generate = fake_generate(lambda media: truth[tuple(media)])
    result = evaluate_examples(discrn_task(), rows, generate)
    assert result.metrics["accuracy"] == 1.0 and result.metrics["lavis_accuracy"] == 1.0
    placeholders = {"discrn_audio_video": "<audio> <video>", "discrn_image_3d": "<image> <point_cloud>"}[name]
    assert all(placeholders in prompt.text for prompt in generate.asked)
