"""The 3D benchmarks' files in their distributed layout, a handful of items each (`LAYOUTS`: benchmark name
-> writer(folder) -> (annotations, media_dir))."""

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark_layouts.audio import write_file

MODELNET_CLASSES = ["airplane", "bed", "night_stand"]
MODELNET_TEST_IDS = ["airplane_0627", "night_stand_0201", "bed_0516"]


def modelnet_points(seed: int, points: int = 64) -> np.ndarray:
    """(points, 6): xyz and unit normals, as ModelNet40's resampled `.txt` files hold them."""
    rng = np.random.default_rng(seed)
    xyz = rng.standard_normal((points, 3))
    return np.concatenate([xyz, xyz / np.linalg.norm(xyz, axis=1, keepdims=True)], axis=1)


def modelnet_txt(points: np.ndarray) -> bytes:
    return "\n".join(",".join(f"{value:.6f}" for value in point) for point in points).encode() + b"\n"


def modelnet40_test(folder: Path) -> tuple[Path, Path]:
    root = folder / "modelnet40_normal_resampled"
    write_file(root / "modelnet40_shape_names.txt", ("\n".join(MODELNET_CLASSES) + "\n").encode())
    write_file(root / "modelnet40_test.txt", ("\n".join(MODELNET_TEST_IDS) + "\n").encode())
    for seed, shape in enumerate(MODELNET_TEST_IDS):
        write_file(root / shape.rsplit("_", 1)[0] / f"{shape}.txt", modelnet_txt(modelnet_points(seed)))
    return root, root


def npz_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, array)  # stored as `arr_0`, as LAVIS's Objaverse clouds are
    return buffer.getvalue()


def coloured_cloud(seed: int, points: int = 64) -> np.ndarray:
    """(points, 6): xyz and rgb in [0, 1], as LAVIS's Objaverse `.npz` clouds."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.standard_normal((points, 3)), rng.random((points, 3))], axis=1).astype(
        np.float32
    )


OBJAVERSE_ROWS = [
    ("ed51a51909ee46c780db3a85e821feb2", "a green and white ceramic teapot"),
    ("0a8a29b1ac5f4bc8aa6e2b7b3e5a1d6c", "a wooden chair with four legs"),
    ("7c1e4b5d2f8a4e9b9d3c6a1f0e2b4d8c", "a red sports car"),
]


def objaverse_cap3d_test(folder: Path) -> tuple[Path, Path]:
    lines = ["sample_id,data", *(f'{sample},"{caption}"' for sample, caption in OBJAVERSE_ROWS)]
    annotations = write_file(
        folder / "objaverse" / "cap3d_cap_final_val.csv", ("\n".join(lines) + "\n").encode()
    )
    media = folder / "objaverse" / "objaverse_pc_parallel"
    for seed, (sample, _) in enumerate(OBJAVERSE_ROWS):
        write_file(media / sample / f"{sample}_8192.npz", npz_bytes(coloured_cloud(seed)))
    return annotations, media


LAYOUTS: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "modelnet40_test": modelnet40_test,
    "objaverse_cap3d_test": objaverse_cap3d_test,
}
