"""Point-cloud feature extractor: any cloud or mesh in, a fixed-size unit-sphere cloud out.

Every input becomes an (points, 3) xyz or (points, 6) xyz + rgb array, then
1. `num_points` points are sampled: farthest-point sampling (FPS) or seeded random sampling;
   FPS starts at the point farthest from the centroid, so the sampled set does not depend on the
   order of the input points; a cloud with too few points is topped up with repeated points
   (seeded, with a warning);
2. xyz is centred at its centroid and divided by the largest norm (the unit sphere, as ULIP-2);
3. colours are scaled to [0, 1] (0-255 input is detected) and kept, dropped or filled with grey
   according to `in_channels`.

Accepted inputs: numpy arrays and torch tensors, paths to `.npy` arrays (read with
`allow_pickle=False`) or `.ply`, `.obj`, `.off`, `.glb`, `.gltf`, `.stl` files, the same files as
bytes, data URIs or base64 strings (their format from `{"bytes", "format"}`, the data URI's MIME type,
or their first bytes), trimesh objects (`Trimesh`, `Scene`, `PointCloud`), and the values of a
`datasets.Mesh` column (decoded trimesh objects, or `{"path", "bytes"}` dicts when decoding is
off). Meshes are turned into clouds by seeded surface sampling. trimesh is imported only when a
file or mesh is given.

The model's own sampler (modeling_pointbert.farthest_point_sample) cannot be imported here:
files in this folder travel with saved checkpoints and may only import their own siblings.
"""

import io
import warnings
from pathlib import Path

import numpy as np
from transformers import BatchFeature, FeatureExtractionMixin

from .media_bytes_xllm import encoded_media, missing_source_error

MESH_FILE_TYPES = (".ply", ".glb", ".gltf", ".stl", ".obj", ".off")
POINT_FILE_TYPES = (".npy", *MESH_FILE_TYPES)
# MIME types a data URI may give a point-cloud or mesh file, by file type.
POINT_FILE_MIME_TYPES = {
    "application/x-npy": "npy",
    "application/npy": "npy",
    "model/ply": "ply",
    "application/ply": "ply",
    "model/obj": "obj",
    "model/off": "off",
    "model/stl": "stl",
    "model/gltf-binary": "glb",
    "model/gltf+json": "gltf",
}


def batched_farthest_point_indices(xyz: np.ndarray, count: int) -> np.ndarray:
    """FPS over each cloud of (clouds, points, 3), each starting at its point farthest from its centroid;
    returns (clouds, count). Each row is what the cloud gets alone: one step serves every cloud, since the
    Python loop over the `count` steps is most of FPS's time on small clouds (measured: 12 ms a cloud of
    512 points one at a time, 1.6 ms in a batch of 500)."""
    clouds = np.arange(len(xyz))
    starts = [np.argmax(np.linalg.norm(cloud - cloud.mean(0), axis=1)) for cloud in xyz]
    chosen = np.empty((len(xyz), count), dtype=np.int64)
    distance_to_chosen = np.full(xyz.shape[:2], np.inf)
    chosen[:, 0] = starts
    # One contiguous (clouds, points) array per axis: a sum over a trailing axis of 3 is numpy's slowest
    # reduction, and x^2 + y^2 + z^2 added in this order is exactly what it gives.
    axes = [np.ascontiguousarray(xyz[..., axis]) for axis in range(3)]
    for step in range(1, count):
        newest = chosen[:, step - 1]
        distance = sum((axis - axis[clouds, newest][:, None]) ** 2 for axis in axes)  # (clouds, points)
        np.minimum(distance_to_chosen, distance, out=distance_to_chosen)
        chosen[:, step] = np.argmax(distance_to_chosen, axis=1)
    return chosen


def normalise_to_unit_sphere(xyz: np.ndarray, scale: bool = True) -> np.ndarray:
    """Centre at the centroid and (with `scale`) scale so the farthest point has norm 1."""
    centred = xyz - xyz.mean(0)
    radius = np.linalg.norm(centred, axis=1).max()
    return centred / radius if scale and radius > 0 else centred


def check_cloud(points: np.ndarray, name: str = "point_clouds") -> np.ndarray:
    """Reject anything that is not a finite (points, 3) or (points, 6) array; `name` is quoted in errors."""
    if points.ndim != 2 or points.shape[1] not in (3, 6) or len(points) == 0:
        raise ValueError(f"`{name}` must have shape (points, 3) or (points, 6), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(
            f"`{name}` must hold finite values, got {int((~np.isfinite(points)).sum())} NaN or inf entries"
        )
    return points


def scale_colours(points: np.ndarray) -> np.ndarray:
    """Colours given as 0-255 are brought to [0, 1]; xyz is left alone."""
    if points.shape[1] == 6 and points[:, 3:].max() > 1.0:
        return np.concatenate([points[:, :3], points[:, 3:] / 255.0], axis=1)
    return points


def points_from_trimesh(geometry, count: int, seed: int) -> np.ndarray:
    """xyz (+ rgb when the geometry has colours) from a trimesh Scene, Trimesh or PointCloud."""
    import trimesh

    if isinstance(geometry, trimesh.Scene):
        geometry = geometry.to_geometry()
    if isinstance(geometry, trimesh.PointCloud):
        colours = geometry.colors
        xyz = np.asarray(geometry.vertices)
        return np.concatenate([xyz, colours[:, :3] / 255.0], axis=1) if len(colours) else xyz
    if not isinstance(geometry, trimesh.Trimesh):
        raise ValueError(f"expected a trimesh Trimesh, Scene or PointCloud, got {type(geometry).__name__}")
    xyz, face_index = trimesh.sample.sample_surface(geometry, count, seed=seed)
    if geometry.visual.kind in ("vertex", "face"):
        colours = geometry.visual.face_colors[face_index, :3] / 255.0
        return np.concatenate([xyz, colours], axis=1)
    return np.asarray(xyz)


def sniffed_file_type(data: bytes) -> str | None:
    """The file type that the first bytes of a point-cloud or mesh file announce, if any."""
    head = data[:256].lstrip()
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    if data.startswith(b"glTF"):
        return "glb"
    if head.startswith(b"ply"):
        return "ply"
    if head.split(b"\n", 1)[0].strip() in (b"OFF", b"COFF", b"NOFF", b"CNOFF"):
        return "off"
    if any(line.startswith((b"v ", b"o ", b"#", b"vn ", b"f ")) for line in head.splitlines()[:1]):
        return "obj"
    return None


def point_file_contents(source, name: str) -> tuple[bytes, str] | None:
    """(bytes, file type) of a cloud given as bytes, a data URI, base64 or `{"bytes", "format"}`; None for a
    path or a `datasets.Mesh` `{"path", "bytes"}` value, which are opened by name."""
    if isinstance(source, dict):
        if source.get("bytes") is None or source.get("path"):
            return None
        data, mime = bytes(source["bytes"]), None
        declared = source.get("format")
    else:
        encoded = encoded_media(source, name)
        if encoded is None:
            return None
        (data, mime), declared = encoded, None
    file_type = declared or POINT_FILE_MIME_TYPES.get(mime or "") or sniffed_file_type(data)
    file_type = (file_type or "").lower().lstrip(".")
    if "." + file_type not in POINT_FILE_TYPES:
        raise ValueError(
            f"`{name}` is a point-cloud file of unknown type ({'MIME ' + repr(mime) if mime else 'no MIME type'}, "
            f"format {declared!r}); expected one of {[t[1:] for t in POINT_FILE_TYPES]}: give `format`, a data URI "
            "MIME type such as model/ply, or a file that starts the way its format does"
        )
    return data, file_type


def load_npy_cloud(source: str | bytes, name: str) -> np.ndarray:
    """A `.npy` array (pickles refused: a file from a client must not run code)."""
    try:
        return np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False)
    except ValueError as error:
        raise ValueError(
            f"`{name}` must be a .npy array of numbers without pickled objects ({error})"
        ) from error


def load_mesh_file(source: str | Path | dict, data: bytes | None = None, file_type: str | None = None):
    """Open a mesh/point file by path, from its bytes, or a `datasets.Mesh` value stored as {"path", "bytes"}."""
    import trimesh

    if data is not None:
        return trimesh.load(io.BytesIO(data), file_type=file_type)
    path = source.get("path") if isinstance(source, dict) else str(source)
    suffix = Path(path or "").suffix.lower()
    if suffix not in MESH_FILE_TYPES:
        raise ValueError(f"mesh files must end in one of {MESH_FILE_TYPES}, got {path!r}")
    if isinstance(source, dict) and source.get("bytes") is not None:
        return trimesh.load(io.BytesIO(source["bytes"]), file_type=suffix[1:])
    return trimesh.load(path)


def points_from_file(source, mesh_points: int, seed: int, name: str) -> np.ndarray:
    """Points of a `.npy` or mesh file given by path, bytes, data URI, base64 or `datasets.Mesh` value."""
    contents = point_file_contents(source, name)
    if contents is not None:
        data, file_type = contents
        if file_type == "npy":
            return load_npy_cloud(data, name)
        return points_from_trimesh(load_mesh_file(source, data, file_type), mesh_points, seed)
    path = str(source.get("path") if isinstance(source, dict) else source)
    if Path(path).suffix.lower() == ".npy":
        return load_npy_cloud(path, name)
    if not isinstance(source, dict) and not Path(path).is_file():
        raise missing_source_error(path, name)
    return points_from_trimesh(load_mesh_file(source), mesh_points, seed)


def to_point_array(source, mesh_points: int, seed: int, name: str = "point_clouds") -> np.ndarray:
    """Turn one input of any accepted kind into a (points, 3 or 6) float array."""
    if isinstance(source, np.ndarray) or hasattr(source, "detach"):
        points = np.asarray(source.detach().cpu() if hasattr(source, "detach") else source, dtype=np.float64)
    elif isinstance(source, (str, Path, dict, bytes, bytearray, memoryview)):
        points = points_from_file(source, mesh_points, seed, name)
    elif type(source).__module__.startswith("trimesh"):
        points = points_from_trimesh(source, mesh_points, seed)
    else:
        raise ValueError(
            "a point cloud must be a numpy array, a torch tensor, a .npy or mesh file (path, bytes, data URI or "
            f"base64), a trimesh object or a datasets.Mesh value, got {type(source).__name__}"
        )
    if not np.issubdtype(np.asarray(points).dtype, np.number):
        raise ValueError(f"`{name}` must hold numbers, got dtype {np.asarray(points).dtype}")
    return scale_colours(check_cloud(np.asarray(points, dtype=np.float64), name))


class XLLMPointCloudFeatureExtractor(FeatureExtractionMixin):
    """Prepare point clouds for PointBERT: `point_clouds` of shape (batch, num_points, 3 or 6).

    Args:
        num_points: points per output cloud (ULIP-2: 8192).
        sampling: "fps" (farthest-point sampling, order independent) or "random" (seeded).
        in_channels: 3 drops colours, 6 keeps them (grey `default_colour` where none are given),
            None keeps whatever the inputs have (all clouds of a batch must agree).
        mesh_points: points drawn from a mesh surface before sampling.
        seed: seeds random sampling, mesh surface sampling and the topping-up of small clouds.
        normalize_scale: scale each cloud to the unit sphere (ULIP-2, X-InstructBLIP). Turn it off
            when absolute size carries meaning (the demo world asks "which is larger?"): clouds
            are then only centred.
    """

    model_input_names = ["point_clouds"]

    def __init__(
        self,
        num_points: int = 8192,
        sampling: str = "fps",
        in_channels: int | None = None,
        default_colour: float = 0.4,
        mesh_points: int = 16384,
        seed: int = 0,
        normalize_scale: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if sampling not in ("fps", "random"):
            raise ValueError(f"sampling must be 'fps' or 'random', got {sampling!r}")
        if in_channels not in (None, 3, 6):
            raise ValueError(f"in_channels must be None, 3 or 6, got {in_channels}")
        if num_points < 1:
            raise ValueError(f"num_points must be positive, got {num_points}")
        self.num_points = num_points
        self.sampling = sampling
        self.in_channels = in_channels
        self.default_colour = default_colour
        self.mesh_points = mesh_points
        self.seed = seed
        self.normalize_scale = normalize_scale

    def sample_indices(self, clouds: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """`num_points` indices into each (points, 3+) cloud: every point plus seeded repeats for a cloud
        that is too small, else FPS (clouds of one size sampled together) or seeded random sampling; `rng` is
        drawn from in cloud order."""
        indices, by_size = [None] * len(clouds), {}
        for index, cloud in enumerate(clouds):
            if len(cloud) < self.num_points:
                warnings.warn(
                    f"`point_clouds[{index}]` has {len(cloud)} points, fewer than num_points={self.num_points}; "
                    "points are repeated (sampled with replacement) to fill it",
                    stacklevel=3,
                )
                repeats = rng.choice(len(cloud), self.num_points - len(cloud), replace=True)
                indices[index] = np.concatenate([np.arange(len(cloud)), repeats])
            elif self.sampling == "fps":
                by_size.setdefault(len(cloud), []).append(index)
            else:
                indices[index] = rng.choice(len(cloud), self.num_points, replace=False)
        for members in by_size.values():
            xyz = np.stack([clouds[index][:, :3] for index in members])
            for index, chosen in zip(
                members, batched_farthest_point_indices(xyz, self.num_points), strict=True
            ):
                indices[index] = chosen
        return indices

    def match_channels(self, points: np.ndarray) -> np.ndarray:
        """Drop colours or fill them with grey so the cloud has `in_channels` channels."""
        if self.in_channels == 3:
            return points[:, :3]
        if self.in_channels == 6 and points.shape[1] == 3:
            return np.concatenate([points, np.full_like(points, self.default_colour)], axis=1)
        return points

    def normalised(self, points: np.ndarray) -> np.ndarray:
        """A sampled cloud in the unit sphere with `in_channels` channels."""
        xyz = normalise_to_unit_sphere(points[:, :3], scale=self.normalize_scale)
        return self.match_channels(np.concatenate([xyz, points[:, 3:]], axis=1))

    def __call__(self, point_clouds, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """Prepare one cloud or a list of clouds (a single 2-D array counts as one cloud)."""
        single = isinstance(point_clouds, (str, Path, dict, bytes)) or getattr(point_clouds, "ndim", 0) == 2
        if single or type(point_clouds).__module__.startswith("trimesh"):
            point_clouds = [point_clouds]
        clouds = [
            to_point_array(source, self.mesh_points, self.seed, f"point_clouds[{index}]")
            for index, source in enumerate(point_clouds)
        ]
        indices = self.sample_indices(clouds, np.random.default_rng(self.seed))
        prepared = [self.normalised(cloud[chosen]) for cloud, chosen in zip(clouds, indices, strict=True)]
        channel_counts = {cloud.shape[1] for cloud in prepared}
        if len(channel_counts) > 1:
            raise ValueError(
                f"point clouds in one batch mix {sorted(channel_counts)} channels; set in_channels to 3 or 6"
            )
        batch = np.stack(prepared).astype(np.float32)  # (batch, num_points, channels)
        return BatchFeature({"point_clouds": batch}, tensor_type=return_tensors)


__all__ = ["XLLMPointCloudFeatureExtractor"]
