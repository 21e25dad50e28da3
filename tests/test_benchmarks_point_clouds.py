"""Importers of the 3D benchmarks (ModelNet40, Objaverse / Cap3D) and the point-file reader they share:
safe formats, corrupt files named, LAVIS's pickled `.dat` only behind `allow_pickle`."""

import pickle

import numpy as np
import pytest
from benchmark_layouts.audio import write_file
from benchmark_layouts.point_clouds import (
    LAYOUTS,
    MODELNET_CLASSES,
    MODELNET_TEST_IDS,
    coloured_cloud,
    modelnet_points,
    npz_bytes,
)
from benchmark_rows import fake_generate, fake_rank
from media_files import mesh_bytes, npy_bytes

from xllm.evaluation.benchmarks.benchmark import ImportOptions
from xllm.evaluation.benchmarks.point_clouds import BENCHMARKS, decode_point_cloud
from xllm.evaluation.runner import evaluate_examples
from xllm.evaluation.tasks import LIKELIHOOD_CLASSIFICATION, TASKS
from xllm.processing.feature_extraction_point_cloud_xllm import XLLMPointCloudFeatureExtractor

NAMED = {benchmark.name: benchmark for benchmark in BENCHMARKS}
SAFE = ImportOptions()
PICKLES = ImportOptions(allow_pickle=True)


def test_modelnet40_rows_name_each_shape_its_class_and_its_point_file(tmp_path):
    annotations, media = LAYOUTS["modelnet40_test"](tmp_path)
    rows = NAMED["modelnet40_test"].read(annotations, media, SAFE)
    assert [(row["id"], row["label"]) for row in rows] == [
        ("airplane_0627", "airplane"),
        ("night_stand_0201", "night_stand"),
        ("bed_0516", "bed"),
    ]
    assert rows[1]["point_clouds"] == str(media / "night_stand" / "night_stand_0201.txt")
    assert NAMED["modelnet40_test"].media_file(rows[1]["point_clouds"]) == rows[1]["point_clouds"]
    assert all(row["classes"] == MODELNET_CLASSES for row in rows)
    assert NAMED["modelnet40_test"].read(annotations / "modelnet40_test.txt", media, SAFE) == rows


def test_modelnet40_text_points_drop_the_normals(tmp_path):
    annotations, media = LAYOUTS["modelnet40_test"](tmp_path)
    row = NAMED["modelnet40_test"].read(annotations, media, SAFE)[0]
    points = decode_point_cloud(row["point_clouds"], SAFE)
    np.testing.assert_allclose(points, modelnet_points(0)[:, :3], atol=1e-6)


def test_modelnet40_wrong_root_and_unknown_classes_are_named(tmp_path):
    with pytest.raises(ValueError, match="has no modelnet40_shape_names.txt"):
        NAMED["modelnet40_test"].read(tmp_path, tmp_path, SAFE)
    annotations, media = LAYOUTS["modelnet40_test"](tmp_path)
    (annotations / "modelnet40_test.txt").write_text("airplane_0627\nsofa_0001\n")
    with pytest.raises(ValueError, match=r"modelnet40_test.txt.*\['sofa'\] are not among them"):
        NAMED["modelnet40_test"].read(annotations, media, SAFE)


def write_dat(folder, clouds, labels):
    """LAVIS's preprocessed split: a pickle of [list of (points, 6) arrays, list of (1,) label arrays]."""
    data = pickle.dumps([clouds, [np.array([label], dtype=np.int32) for label in labels]])
    return write_file(folder / "modelnet40_test_8192pts_fps.dat", data)


def test_modelnet40_dat_is_refused_without_allow_pickle(tmp_path):
    annotations, media = LAYOUTS["modelnet40_test"](tmp_path)
    dat = write_dat(annotations, [modelnet_points(seed) for seed in range(3)], [0, 2, 1])
    with pytest.raises(
        ValueError, match=r"modelnet40_test_8192pts_fps.dat.*is a pickle.*pass --allow-pickle"
    ):
        NAMED["modelnet40_test"].read(dat, media, SAFE)
    with pytest.raises(ValueError, match="--allow-pickle"):
        decode_point_cloud(f"{dat}::0", SAFE)


def test_modelnet40_dat_with_allow_pickle_warns_and_reads_lavis_points_and_labels(tmp_path):
    annotations, media = LAYOUTS["modelnet40_test"](tmp_path)
    clouds = [modelnet_points(seed + 10, points=32) for seed in range(3)]
    dat = write_dat(annotations, clouds, [0, 2, 1])
    with pytest.warns(UserWarning, match=r"Unpickling .*dat.*--allow-pickle"):
        rows = NAMED["modelnet40_test"].read(dat, media, PICKLES)
    labels = [MODELNET_CLASSES[index] for index in (0, 2, 1)]  # the .dat's labels index the shape names
    assert [(row["id"], row["label"]) for row in rows] == list(zip(MODELNET_TEST_IDS, labels, strict=True))
    assert rows[2]["point_clouds"] == f"{dat}::2"
    assert NAMED["modelnet40_test"].media_file(rows[2]["point_clouds"]) == str(dat)  # what the runner checks
    np.testing.assert_allclose(decode_point_cloud(rows[2]["point_clouds"], PICKLES), clouds[2][:, :3])
    with pytest.raises(ValueError, match="names item 7 of .* holds 3 point clouds"):
        decode_point_cloud(f"{dat}::7", PICKLES)


def test_a_dat_that_does_not_match_the_shape_list_is_refused(tmp_path):
    annotations, media = LAYOUTS["modelnet40_test"](tmp_path)
    dat = write_dat(annotations, [modelnet_points(0)], [0])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="holds 1 point clouds, .* lists 3"):
        NAMED["modelnet40_test"].read(dat, media, PICKLES)


def test_objaverse_rows_read_lavis_csv_and_npz_clouds(tmp_path):
    annotations, media = LAYOUTS["objaverse_cap3d_test"](tmp_path)
    rows = NAMED["objaverse_cap3d_test"].read(annotations, media, SAFE)
    sample = "ed51a51909ee46c780db3a85e821feb2"
    assert rows[0] == {
        "id": sample,
        "point_clouds": str(media / sample / f"{sample}_8192.npz"),
        "references": ["a green and white ceramic teapot"],
    }
    np.testing.assert_allclose(decode_point_cloud(rows[0]["point_clouds"], SAFE), coloured_cloud(0))
    broken = write_file(tmp_path / "cap3d_cap_final_val.csv", b"uid,caption\nabc,a cup\n")
    with pytest.raises(ValueError, match=r"columns \['sample_id', 'data'\]"):
        NAMED["objaverse_cap3d_test"].read(broken, media, SAFE)


@pytest.mark.parametrize("file_type", ["ply", "off"])
def test_mesh_files_decode_to_geometry_the_feature_extractor_samples(file_type, tmp_path):
    path = write_file(tmp_path / f"box.{file_type}", mesh_bytes(file_type))
    geometry = decode_point_cloud(str(path), SAFE)
    clouds = XLLMPointCloudFeatureExtractor(num_points=16, mesh_points=64)(geometry)["point_clouds"]
    assert tuple(clouds.shape) == (1, 16, 3)


def test_npy_and_npz_clouds_are_read_without_pickles(tmp_path):
    cloud = coloured_cloud(3)
    np.testing.assert_allclose(
        decode_point_cloud(str(write_file(tmp_path / "c.npy", npy_bytes(cloud))), SAFE), cloud
    )
    pickled = np.empty(1, dtype=object)
    pickled[0] = {"points": cloud}
    np.save(tmp_path / "pickled.npy", pickled, allow_pickle=True)
    with pytest.raises(ValueError, match=r"pickled.npy.*without pickled objects"):
        decode_point_cloud(str(tmp_path / "pickled.npy"), SAFE)
    np.savez(tmp_path / "two.npz", first=cloud, second=cloud)
    with pytest.raises(
        ValueError, match=r"two.npz.*`arr_0` or a single array, got the arrays \['first', 'second'\]"
    ):
        decode_point_cloud(str(tmp_path / "two.npz"), SAFE)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("bad.txt", b"1,2,three\n", "cannot be read as .txt"),
        ("bad.npz", npz_bytes(coloured_cloud(0))[:40], "cannot be read as .npz"),
        ("bad.off", b"OFF\n3 1 0\n0 0 0\n", "cannot be read as .off"),
        ("nan.npy", npy_bytes(np.full((4, 3), np.nan)), "finite values"),
        ("flat.npy", npy_bytes(np.zeros((4, 2))), r"shape \(points, 3\) or \(points, 6\)"),
        ("cloud.obj", b"v 0 0 0\n", "must end in one of"),
    ],
)
def test_corrupt_point_files_are_a_value_error_naming_the_file(name, data, reason, tmp_path):
    path = write_file(tmp_path / name, data)
    with pytest.raises(ValueError, match=reason) as error:
        decode_point_cloud(str(path), SAFE)
    assert str(path) in str(error.value)


def test_modelnet40_rows_are_ranked_over_their_classes_and_objaverse_rows_captioned(tmp_path):
    annotations, media = LAYOUTS["modelnet40_test"](tmp_path / "modelnet")
    rows = NAMED["modelnet40_test"].read(annotations, media, SAFE)
    truth = {row["point_clouds"].rsplit("/", 1)[1]: row["label"] for row in rows}
    result = evaluate_examples(
        LIKELIHOOD_CLASSIFICATION, rows, None, rank=fake_rank(lambda media: truth[media[0]])
    )
    assert result.predictions == ["airplane", "night_stand", "bed"] and result.metrics["accuracy"] == 1.0
    annotations, media = LAYOUTS["objaverse_cap3d_test"](tmp_path / "objaverse")
    rows = NAMED["objaverse_cap3d_test"].read(annotations, media, SAFE)
    captioned = evaluate_examples(TASKS["captioning"], rows, fake_generate(lambda media: "a wooden chair"))
    assert 0 < captioned.metrics["bleu_1"] < 1
