import numpy as np
import pytest
import torch
import trimesh

from xllm.processing.feature_extraction_point_cloud_xllm import XLLMPointCloudFeatureExtractor


def random_cloud(points: int = 300, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(points, channels)) * 3.0 + 5.0


def as_point_set(cloud: np.ndarray) -> set[tuple]:
    return {tuple(np.round(point, 6)) for point in cloud}


def test_permuted_input_gives_the_same_farthest_point_sample():
    extractor = XLLMPointCloudFeatureExtractor(num_points=64)
    cloud = random_cloud()
    permuted = cloud[np.random.default_rng(1).permutation(len(cloud))]
    first = extractor(cloud, return_tensors="np")["point_clouds"][0]
    second = extractor(permuted, return_tensors="np")["point_clouds"][0]
    assert as_point_set(first) == as_point_set(second)


def test_output_lies_in_the_unit_sphere_centred_at_the_origin():
    for sampling in ("fps", "random"):
        extractor = XLLMPointCloudFeatureExtractor(num_points=100, sampling=sampling)
        cloud = extractor(random_cloud(), return_tensors="np")["point_clouds"][0]
        np.testing.assert_allclose(cloud.mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(cloud, axis=1).max(), 1.0, atol=1e-5)


def test_random_sampling_is_reproducible_with_the_same_seed():
    cloud = random_cloud()
    first = XLLMPointCloudFeatureExtractor(num_points=50, sampling="random", seed=3)(cloud)["point_clouds"]
    second = XLLMPointCloudFeatureExtractor(num_points=50, sampling="random", seed=3)(cloud)["point_clouds"]
    other = XLLMPointCloudFeatureExtractor(num_points=50, sampling="random", seed=4)(cloud)["point_clouds"]
    torch.testing.assert_close(first, second)
    assert not torch.allclose(first, other)


def test_farthest_point_sampling_picks_the_extremes_first():
    cube_corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    cloud = np.concatenate([cube_corners, 0.1 * random_cloud(200) - 0.5])
    sampled = XLLMPointCloudFeatureExtractor(num_points=8)(cloud, return_tensors="np")["point_clouds"][0]
    np.testing.assert_allclose(np.abs(sampled).max(axis=1), np.full(8, 1 / np.sqrt(3)), atol=0.05)


def reference_farthest_point_indices(xyz: np.ndarray, count: int) -> list[int]:
    """FPS one cloud at a time, written plainly: the farthest point from the centroid, then repeatedly the
    point farthest from those chosen."""
    chosen = [int(np.argmax(np.linalg.norm(xyz - xyz.mean(0), axis=1)))]
    nearest = np.full(len(xyz), np.inf)
    while len(chosen) < count:
        nearest = np.minimum(nearest, ((xyz - xyz[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(np.argmax(nearest)))
    return chosen


def test_clouds_sampled_together_get_what_each_gets_alone():
    # One batch mixing sizes, dtypes, a small cloud (topped up, drawing from the seeded generator) and
    # clouds of one size that are sampled in one pass.
    clouds = [random_cloud(300, 3, seed) for seed in range(4)]
    clouds += [random_cloud(300, 3, 9).astype(np.float32), random_cloud(450, 3, 10), random_cloud(20, 3, 11)]
    extractor = XLLMPointCloudFeatureExtractor(num_points=64)
    with pytest.warns(UserWarning, match="point_clouds\\[6\\]` has 20 points"):
        together = extractor(clouds, return_tensors="np")["point_clouds"]
    for index, cloud in enumerate(clouds[:6]):
        alone = extractor(cloud, return_tensors="np")["point_clouds"][0]
        np.testing.assert_array_equal(together[index], alone)
        cloud = cloud.astype(np.float64)  # as the extractor reads every cloud
        sampled = cloud[reference_farthest_point_indices(cloud, 64)]
        assert as_point_set(extractor.normalised(sampled).astype(np.float32)) == as_point_set(alone)


def test_too_few_points_are_resampled_with_replacement_and_a_warning():
    cloud = random_cloud(points=10)
    with pytest.warns(UserWarning, match="fewer than num_points=32"):
        output = XLLMPointCloudFeatureExtractor(num_points=32)(cloud, return_tensors="np")["point_clouds"][0]
    assert output.shape == (32, 3)
    assert len(as_point_set(output)) == 10


def test_nan_is_rejected_with_a_clear_error():
    cloud = random_cloud()
    cloud[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        XLLMPointCloudFeatureExtractor(num_points=16)(cloud)


def test_wrong_shape_is_rejected_naming_the_shape():
    with pytest.raises(ValueError, match=r"\(points, 3\) or \(points, 6\), got \(20, 4\)"):
        XLLMPointCloudFeatureExtractor(num_points=16)(np.zeros((20, 4)))


def test_colours_are_kept_and_0_255_values_are_scaled_to_unit_range():
    cloud = random_cloud(channels=3)
    colours = np.random.default_rng(2).integers(0, 256, size=(len(cloud), 3)).astype(float)
    output = XLLMPointCloudFeatureExtractor(num_points=40)(np.concatenate([cloud, colours], axis=1))
    rgb = output["point_clouds"][0, :, 3:]
    assert output["point_clouds"].shape == (1, 40, 6)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0 and rgb.max() > 0.5


def test_in_channels_drops_or_fills_colours():
    xyz, xyz_rgb = random_cloud(channels=3), np.concatenate([random_cloud(), np.full((300, 3), 0.2)], axis=1)
    dropped = XLLMPointCloudFeatureExtractor(num_points=20, in_channels=3)(xyz_rgb)["point_clouds"]
    filled = XLLMPointCloudFeatureExtractor(num_points=20, in_channels=6)([xyz, xyz_rgb])["point_clouds"]
    assert dropped.shape == (1, 20, 3)
    assert filled.shape == (2, 20, 6)
    torch.testing.assert_close(filled[0, :, 3:], torch.full((20, 3), 0.4))
    torch.testing.assert_close(filled[1, :, 3:], torch.full((20, 3), 0.2))


def test_mixed_channel_batch_without_in_channels_is_rejected():
    xyz_rgb = np.concatenate([random_cloud(), np.zeros((300, 3))], axis=1)
    with pytest.raises(ValueError, match="mix"):
        XLLMPointCloudFeatureExtractor(num_points=20)([random_cloud(), xyz_rgb])


def test_torch_tensors_and_batches_are_accepted():
    batch = torch.from_numpy(np.stack([random_cloud(seed=0), random_cloud(seed=1)]))
    output = XLLMPointCloudFeatureExtractor(num_points=24)(batch)
    assert output["point_clouds"].shape == (2, 24, 3) and output["point_clouds"].dtype == torch.float32


@pytest.mark.parametrize("suffix", [".ply", ".stl", ".obj", ".glb"])
def test_mesh_files_are_sampled_from_their_surface(tmp_path, suffix):
    path = tmp_path / f"box{suffix}"
    trimesh.creation.box(extents=(2.0, 1.0, 1.0)).export(path)
    extractor = XLLMPointCloudFeatureExtractor(num_points=64, mesh_points=400, in_channels=3)
    cloud = extractor(str(path), return_tensors="np")["point_clouds"][0]
    assert cloud.shape == (64, 3)
    np.testing.assert_allclose(np.linalg.norm(cloud, axis=1).max(), 1.0, atol=1e-5)
    assert np.ptp(cloud[:, 0]) > 1.5 * np.ptp(cloud[:, 1])  # the box is twice as long in x


def test_datasets_mesh_column_values_are_read(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "sphere.ply"
    trimesh.creation.icosphere(subdivisions=2).export(path)
    dataset = datasets.Dataset.from_dict({"mesh": [str(path)]}).cast_column("mesh", datasets.Mesh())
    undecoded = dataset.cast_column("mesh", datasets.Mesh(decode=False))[0]["mesh"]
    extractor = XLLMPointCloudFeatureExtractor(num_points=32, mesh_points=200, in_channels=3)
    decoded_cloud = extractor(dataset[0]["mesh"])["point_clouds"]
    undecoded_cloud = extractor(undecoded)["point_clouds"]
    assert decoded_cloud.shape == (1, 32, 3)
    torch.testing.assert_close(decoded_cloud, undecoded_cloud)


def test_save_and_load_round_trip(tmp_path):
    extractor = XLLMPointCloudFeatureExtractor(num_points=100, sampling="random", in_channels=6, seed=7)
    extractor.save_pretrained(tmp_path)
    reloaded = XLLMPointCloudFeatureExtractor.from_pretrained(tmp_path)
    assert (reloaded.num_points, reloaded.sampling, reloaded.in_channels, reloaded.seed) == (
        100,
        "random",
        6,
        7,
    )
    cloud = random_cloud()
    torch.testing.assert_close(reloaded(cloud)["point_clouds"], extractor(cloud)["point_clouds"])


def test_invalid_sampling_name_is_rejected():
    with pytest.raises(ValueError, match="sampling must be 'fps' or 'random', got 'grid'"):
        XLLMPointCloudFeatureExtractor(sampling="grid")


def test_without_scale_normalisation_a_larger_cloud_stays_larger():
    rng = np.random.default_rng(0)
    small = rng.normal(size=(600, 3)) * 0.25 + 5.0
    extractor = XLLMPointCloudFeatureExtractor(num_points=256, normalize_scale=False)
    clouds = extractor([small, small * 2.0], return_tensors="np")["point_clouds"]
    radii = np.linalg.norm(clouds, axis=2).max(axis=1)
    assert np.allclose(clouds.mean(axis=1), 0.0, atol=0.2)  # still centred
    assert radii[1] == pytest.approx(2 * radii[0], rel=0.05)
