"""`xllm evaluate --benchmark`: every registered benchmark end to end on its real file layout, bad input,
resume, and the README's benchmark table."""

import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import xllm.evaluation.generation as generation_module
from xllm.cli import main
from xllm.evaluation.benchmarks import BENCHMARKS, ImportOptions
from xllm.evaluation.benchmarks.published import benchmark_table, published_table
from xllm.evaluation.benchmarks.runner import wilson_interval

LAYOUT_FOLDER = Path(__file__).with_name("benchmark_layouts")
README = Path(__file__).parents[1] / "README.md"
TABLE_START, TABLE_END = (
    "<!-- benchmark table: scripts/make_benchmark_table.py -->",
    "<!-- end benchmark table -->",
)
FAST = ["--num-beams", "1", "--max-new-tokens", "2", "--min-new-tokens", "1", "--batch-size", "2"]
REPORT_FIELDS = {
    "benchmark", "modality", "task", "method", "metrics", "intervals", "interval_method", "items", "scored", "failed", "failures",
    "partial", "total_items", "not_provided", "settings", "generation", "preset", "published", "model",
    "annotations", "media_dir",
}  # fmt: skip


def all_layouts() -> dict:
    """benchmark name -> writer, from every module of tests/benchmark_layouts/."""
    layouts = {}
    for module in pkgutil.iter_modules([str(LAYOUT_FOLDER)]):
        layouts.update(importlib.import_module(f"benchmark_layouts.{module.name}").LAYOUTS)
    return layouts


LAYOUTS = all_layouts()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")


def evaluate(model_dir, benchmark: str, annotations, media_dir, output, *extra: str) -> dict:
    argv = ["evaluate", "--benchmark", benchmark, "--annotations", str(annotations), "--media-dir", str(media_dir),
            "--model", str(model_dir), "--output", str(output), *FAST, *extra]  # fmt: skip
    assert main(argv) == 0
    return json.loads((output / "report.json").read_text())


def predictions(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]


def test_every_registered_benchmark_has_a_real_layout_writer():
    assert sorted(BENCHMARKS) == sorted(LAYOUTS)


def test_every_registered_benchmark_has_an_entry_in_the_published_table():
    assert set(BENCHMARKS) <= set(published_table()["benchmarks"])


def test_every_published_figure_names_its_table_and_row_or_says_why_there_is_none():
    table = published_table()
    for name, entry in table["benchmarks"].items():
        assert set(entry["figures"]) == set(table["presets"]), name
        for figure in entry["figures"].values():
            if figure["value"] is None:
                assert figure["why"], name
            else:
                assert figure["table"] and figure["row"], name


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_benchmark_runs_end_to_end_from_its_real_files_and_reports_every_field(
    saved_tiny_dir, tmp_path, name
):
    annotations, media_dir = LAYOUTS[name](tmp_path / "data")
    report = evaluate(
        saved_tiny_dir, name, annotations, media_dir, tmp_path / "out", "--preset", "x-instructblip-7b"
    )
    assert REPORT_FIELDS <= set(report)
    benchmark = BENCHMARKS[name]
    assert (report["benchmark"], report["modality"], report["task"]) == (
        name,
        benchmark.modality,
        benchmark.task,
    )
    assert report["items"] == report["scored"] == report["total_items"] >= 3 and report["failed"] == 0
    assert report["partial"] is False and report["failures"] == []
    assert report["metrics"] and all(isinstance(value, float) for value in report["metrics"].values())
    for metric, interval in report["intervals"].items():
        assert interval["low"] <= report["metrics"][metric] <= interval["high"]
    if benchmark.task in ("vqa", "classification", "discrn"):
        assert report["intervals"] and report["interval_method"].startswith("Wilson score interval")
    if benchmark.task == "captioning":
        assert set(report["not_provided"]) == {"meteor", "spice"}
    assert report["settings"]["decoding"] == benchmark.decoding
    assert report["published"]["source"] and report["preset"] == "x-instructblip-7b"
    metric = report["published"]["metric"]
    assert report["published"]["ours"] == round(100 * report["metrics"][metric], 2)
    assert report["settings"]["decoding_sources"]["num_beams"] == "command line"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert name in markdown and "Published figure for preset x-instructblip-7b" in markdown
    assert len(predictions(tmp_path / "out")) == report["items"]


def test_the_13b_preset_takes_the_13b_eval_configs_decoding(saved_tiny_dir, tmp_path):
    annotations, media_dir = LAYOUTS["vizwiz_val"](tmp_path / "data")
    report = evaluate(
        saved_tiny_dir, "vizwiz_val", annotations, media_dir, tmp_path / "out", "--preset", "x-instructblip-13b",
        "--limit", "1",
    )  # fmt: skip
    assert report["settings"]["decoding"] == "vicuna13b/image/vizwiz_qa"
    assert report["partial"] is True and report["items"] == 1 and report["total_items"] == 3


def test_a_row_whose_media_file_is_missing_is_failed_and_listed_and_the_rest_is_scored(
    saved_tiny_dir, tmp_path
):
    annotations, media_dir = LAYOUTS["okvqa_val"](tmp_path / "data")
    missing = media_dir / "val2014" / "COCO_val2014_000000393225.jpg"
    missing.unlink()
    report = evaluate(saved_tiny_dir, "okvqa_val", annotations, media_dir, tmp_path / "out")
    assert (report["items"], report["scored"], report["failed"]) == (3, 2, 1)
    assert report["failures"] == [{"id": "393225001", "reason": f"missing file {missing.absolute()}"}]
    assert [item["id"] for item in predictions(tmp_path / "out")] == ["262148001", "458752001"]
    assert "393225001" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("name, suffix", [("coco_karpathy_test", ".jpg"), ("msrvtt_caption_test", ".mp4")])
def test_a_corrupt_media_file_is_failed_with_the_decoders_reason(saved_tiny_dir, tmp_path, name, suffix):
    annotations, media_dir = LAYOUTS[name](tmp_path / "data")
    corrupt = sorted(media_dir.rglob(f"*{suffix}"))[0]
    corrupt.write_bytes(b"not a media file" * 8)
    report = evaluate(saved_tiny_dir, name, annotations, media_dir, tmp_path / "out")
    assert report["failed"] == 1 and report["scored"] == report["items"] - 1
    assert report["failures"][0]["reason"].startswith(f"cannot decode {corrupt.absolute()}: ")


def test_a_wrong_media_root_stops_naming_the_file_looked_for_and_the_naming(saved_tiny_dir, tmp_path):
    annotations, _ = LAYOUTS["vizwiz_val"](tmp_path / "data")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(
        ValueError, match=r"holds none of the 3 media files.*VizWiz_val_00000000\.jpg.*expected"
    ):
        evaluate(saved_tiny_dir, "vizwiz_val", annotations, tmp_path / "elsewhere", tmp_path / "out")


def test_a_missing_annotation_file_stops_naming_the_file_expected(tmp_path):
    (tmp_path / "annotations").mkdir()
    with pytest.raises(ValueError, match="has no v2_OpenEnded_mscoco_val2014_questions.json"):
        BENCHMARKS["vqav2_val"].read(tmp_path / "annotations", tmp_path, ImportOptions())
    with pytest.raises(ValueError, match=r"does not exist; expected the file qa_test\.json"):
        BENCHMARKS["msvd_qa_test"].read(tmp_path / "nowhere", tmp_path, ImportOptions())


def test_an_annotation_file_of_another_layout_stops_naming_the_keys_expected(tmp_path):
    path = tmp_path / "val.json"
    path.write_text(json.dumps([{"image_name": "VizWiz_val_00000000.jpg", "question": "what?"}]))
    with pytest.raises(ValueError, match=r"Record 0 of .*val\.json.* lacks \['image', 'answers'\]"):
        BENCHMARKS["vizwiz_val"].read(path, tmp_path, ImportOptions())


def test_a_media_name_climbing_out_of_the_media_folder_is_refused(tmp_path):
    path = tmp_path / "cap_test.json"
    path.write_text(json.dumps([{"video": "../../etc/passwd", "caption": "a"}]))
    with pytest.raises(ValueError, match="relative to --media-dir"):
        BENCHMARKS["msrvtt_caption_test"].read(path, tmp_path, ImportOptions())


def test_an_interrupted_run_resumes_to_the_report_of_an_uninterrupted_one(
    saved_tiny_dir, tmp_path, monkeypatch
):
    annotations, media_dir = LAYOUTS["msrvtt_qa_test"](tmp_path / "data")
    whole = evaluate(
        saved_tiny_dir, "msrvtt_qa_test", annotations, media_dir, tmp_path / "whole", "--batch-size", "1"
    )

    calls, generate = [], generation_module.generate_answers

    def killed_after_two_batches(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt  # what a killed run leaves behind: the cache of the first two items
        return generate(*args, **kwargs)

    monkeypatch.setattr(generation_module, "generate_answers", killed_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            saved_tiny_dir,
            "msrvtt_qa_test",
            annotations,
            media_dir,
            tmp_path / "resumed",
            "--batch-size",
            "1",
        )
    cache_path = tmp_path / "resumed" / "cache.jsonl"
    cache = cache_path.read_text().splitlines()
    assert len(cache) == 1 + 2 and "settings" in json.loads(cache[0])
    cache_path.write_text("\n".join(cache[:2]) + "\n" + cache[2][:12])  # killed while writing the second item
    calls.clear()
    monkeypatch.setattr(
        generation_module, "generate_answers", lambda *a, **k: calls.append(1) or generate(*a, **k)
    )
    resumed = evaluate(
        saved_tiny_dir, "msrvtt_qa_test", annotations, media_dir, tmp_path / "resumed", "--batch-size", "1"
    )

    def without_paths(report: dict) -> dict:
        return {k: v for k, v in report.items() if k not in ("model", "annotations", "media_dir")}

    assert len(calls) == 2  # the items whose answers the cache lacks: the second (cut short) and the third
    assert without_paths(resumed) == without_paths(whole)
    assert predictions(tmp_path / "resumed") == predictions(tmp_path / "whole")


def test_a_cache_made_with_other_settings_is_refused(saved_tiny_dir, tmp_path):
    annotations, media_dir = LAYOUTS["gqa_testdev"](tmp_path / "data")
    evaluate(saved_tiny_dir, "gqa_testdev", annotations, media_dir, tmp_path / "out", "--limit", "1")
    with pytest.raises(
        ValueError, match=r"cache\.jsonl was made with other settings \(differing: \['generation'\]\)"
    ):
        evaluate(saved_tiny_dir, "gqa_testdev", annotations, media_dir, tmp_path / "out", "--num-beams", "2")


def test_benchmark_and_manifest_arguments_are_not_mixed(saved_tiny_dir, tmp_path):
    with pytest.raises(ValueError, match=r"needs --annotations and --media-dir.*missing \['--media-dir'\]"):
        main(
            [
                "evaluate",
                "--benchmark",
                "gqa_testdev",
                "--annotations",
                str(tmp_path),
                "--model",
                str(saved_tiny_dir),
            ]
        )
    with pytest.raises(ValueError, match="needs --task and --data"):
        main(["evaluate", "--model", str(saved_tiny_dir), "--task", "vqa"])


def test_wilson_interval_matches_the_closed_form_values():
    # 8 successes of 10: Wilson 95% interval (0.4902, 0.9433) (Newcombe 1998, Table I, method 3).
    low, high = wilson_interval(0.8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0.0, 5)[0] == 0.0 and wilson_interval(1.0, 5)[1] == 1.0


def test_readme_benchmark_table_is_the_generated_one():
    text = README.read_text()
    assert TABLE_START in text and TABLE_END in text
    shown = text.split(TABLE_START)[1].split(TABLE_END)[0].strip("\n")
    assert shown == benchmark_table(BENCHMARKS).strip("\n"), "run `python scripts/make_benchmark_table.py`"


def test_gqa_reads_lavis_list_layout_as_gqa_own_object_layout(tmp_path):
    annotations, media_dir = LAYOUTS["gqa_testdev"](tmp_path / "data")
    official = BENCHMARKS["gqa_testdev"].read(annotations, media_dir, ImportOptions())
    content = json.loads(annotations.read_text())
    lavis = [
        {"question_id": qid, "image": f"{q['imageId']}.jpg", "question": q["question"], "answer": q["answer"]}
        for qid, q in content.items()
    ]
    lavis_file = tmp_path / "lavis" / "testdev_balanced_questions.json"
    lavis_file.parent.mkdir()
    lavis_file.write_text(json.dumps(lavis))
    assert BENCHMARKS["gqa_testdev"].read(lavis_file.parent, media_dir, ImportOptions()) == official


def test_vatex_reads_lavis_cap_val_as_vatex_own_file(tmp_path):
    annotations, media_dir = LAYOUTS["vatex_caption_val"](tmp_path / "data")
    own = BENCHMARKS["vatex_caption_val"].read(annotations, media_dir, ImportOptions())
    records = [
        {"video": f"{r['videoID']}.mp4", "caption": caption}
        for r in json.loads(annotations.read_text())
        for caption in r["enCap"]
    ]
    lavis_dir = tmp_path / "lavis"
    lavis_dir.mkdir()
    (lavis_dir / "cap_val.json").write_text(json.dumps(records))
    assert BENCHMARKS["vatex_caption_val"].read(lavis_dir, media_dir, ImportOptions()) == own
    assert all(len(row["references"]) == 10 for row in own)


def test_vqa_rows_keep_every_annotators_answer_and_name_the_coco_image(tmp_path):
    annotations, media_dir = LAYOUTS["vqav2_val"](tmp_path / "data")
    row = BENCHMARKS["vqav2_val"].read(annotations, media_dir, ImportOptions())[0]
    assert row["answers"] == ["red"] * 7 + ["blue"] * 3 and row["prompt"] == "what colour is it?"
    assert row["images"] == str((media_dir / "val2014" / "COCO_val2014_000000262148.jpg").absolute())


def test_vqa_needs_the_folder_of_its_two_files(tmp_path):
    annotations, media_dir = LAYOUTS["okvqa_val"](tmp_path / "data")
    with pytest.raises(
        ValueError, match="must be the folder holding OpenEnded_mscoco_val2014_questions.json"
    ):
        BENCHMARKS["okvqa_val"].read(
            annotations / "mscoco_val2014_annotations.json", media_dir, ImportOptions()
        )


def test_a_benchmark_name_registered_twice_is_refused():
    from types import SimpleNamespace

    from xllm.evaluation.benchmarks import collect

    family = SimpleNamespace(__name__="family", BENCHMARKS=(BENCHMARKS["nocaps_val"],))
    with pytest.raises(ValueError, match="'nocaps_val' is registered twice"):
        collect([family, family])


def test_a_lavis_format_model_takes_the_benchmarks_eval_config_inputs(saved_tiny_dir, tmp_path):
    """A model whose processor writes LAVIS's format is asked each benchmark as its LAVIS eval config asks it
    (MSVD-QA: `Question: {} Answer:`, 5 frames; vicuna7b/video/msvd_qa.yaml), and the report says so; a model
    of the `parts` format keeps its own prompt."""
    import copy

    from xllm.evaluation.benchmarks.runner import take_eval_config_inputs
    from xllm.evaluation.decoding import lavis_decoding
    from xllm.processing.prompt_formats_xllm import LavisPromptFormat
    from xllm.testing import tiny_processor

    row = lavis_decoding("vicuna7b/video/msvd_qa")
    assert row["inputs"]["prompt_format"]["prompt"] == "Question: {} Answer:"
    processor = tiny_processor()
    processor.prompt_format = LavisPromptFormat(prompt="{}").to_dict()
    processor.video_processor.num_frames = 2
    assert take_eval_config_inputs(processor, row)
    assert processor.prompt_format == row["inputs"]["prompt_format"]
    assert processor.video_processor.num_frames == row["inputs"]["num_video_frames"] == 5
    parts = tiny_processor()
    before = copy.deepcopy(parts.prompt_format)
    assert not take_eval_config_inputs(parts, row) and parts.prompt_format == before
    annotations, media = LAYOUTS["msvd_qa_test"](tmp_path)
    report = evaluate(
        saved_tiny_dir, "msvd_qa_test", annotations, media, tmp_path / "out", "--preset", "x-instructblip-7b"
    )
    assert report["settings"]["inputs_from"] is None  # the tiny model writes the `parts` format
