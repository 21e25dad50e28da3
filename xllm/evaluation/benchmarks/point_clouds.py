"""Importers of the 3D benchmarks: ModelNet40 test (classification over its 40 class names) and
Objaverse / Cap3D captions; and the reader of their point files (the `decode` hook).

The files are the ones LAVIS's builders read in X-InstructBLIP's eval configs
(`lavis/projects/xinstruct_blip/eval/vicuna7b/pc/*.yaml`). `datasets.Mesh` decodes only `.glb`, `.gltf`,
`.ply` and `.stl` (datasets/features/mesh.py, `_infer_mesh_file_type`), so `decode_point_cloud` reads
the point files these benchmarks come in:

* `.txt`: ModelNet40's own `x,y,z,nx,ny,nz` lines (its normals dropped, as LAVIS does with
  `use_normals = False`, object3d_classification_datasets.py:46, :131-133);
* `.npy` (read with `allow_pickle=False`) and `.npz` (LAVIS's Objaverse clouds, array `arr_0`,
  lavis/processors/ulip_processors.py:193; also without pickles);
* `.ply` and `.off` meshes or clouds, opened with trimesh as the point-cloud feature extractor opens
  them (its `load_mesh_file`); the processor samples their surface;
* LAVIS's preprocessed ModelNet40 `.dat` (the whole split as one pickle of `[points, labels]`,
  object3d_classification_datasets.py:83-84) only with `ImportOptions.allow_pickle`, with a warning:
  unpickling a file runs whatever code it holds. Its items are addressed `{file}::{index}`.
"""

import os
import pickle
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .annotation_files import annotation_file, media_path
from .annotation_tables import csv_records, text_lines
from .benchmark import Benchmark, ImportOptions

if TYPE_CHECKING:
    import numpy as np

# numpy, trimesh and the feature extractor are imported where files are read: the benchmark registry is
# imported by the command line's help, which must import no heavy package.
POINT_FILE_SUFFIXES = (".txt", ".npy", ".npz", ".ply", ".off")
PICKLE_ITEM = "::"  # `{file.dat}::{index}`: one item of a pickled split
PICKLE_REFUSAL = (
    "{path!r} is a pickle (LAVIS's preprocessed ModelNet40 `.dat`); unpickling runs any code the file holds, so "
    "it is read only when asked: pass --allow-pickle (ImportOptions(allow_pickle=True)) for a file you trust, or "
    "give the folder of ModelNet40's own `.txt` point files instead"
)


def refuse_pickle_unless_allowed(path: str | Path, options: ImportOptions) -> None:
    if not options.allow_pickle:
        raise ValueError(PICKLE_REFUSAL.format(path=str(path)))


def unpickled_split(path: str) -> tuple[list, list]:
    """LAVIS's `.dat`: `[list of (points, channels) arrays, list of label arrays]`, kept for the next item
    until the file changes."""
    try:
        modified = os.stat(path).st_mtime_ns
    except OSError as error:
        raise ValueError(f"{path!r} cannot be read: {error}.") from error
    return unpickled_version(path, modified)


@lru_cache(maxsize=1)
def unpickled_version(path: str, modified: int) -> tuple[list, list]:
    try:
        with open(path, "rb") as handle:
            points, labels = pickle.load(handle)  # noqa: S301 (only behind --allow-pickle)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(
            f"{path!r} must be LAVIS's pickled ModelNet40 split, a pair [points, labels] of equal-length lists "
            f"({type(error).__name__}: {error})."
        ) from error
    if len(points) != len(labels):
        raise ValueError(f"{path!r} holds {len(points)} point clouds but {len(labels)} labels.")
    return points, labels


def pickled_split(path: Path, options: ImportOptions) -> tuple[list, list]:
    """The `.dat` split, read only with `allow_pickle`, with a warning that it runs the file's code."""
    refuse_pickle_unless_allowed(path, options)
    warnings.warn(
        f"Unpickling {str(path)!r} (--allow-pickle): a pickle can run any code; read only files you trust.",
        UserWarning,
        stacklevel=2,
    )
    return unpickled_split(str(path))


def npz_cloud(path: str) -> "np.ndarray":
    """The cloud of a `.npz` file: its `arr_0` (how LAVIS's Objaverse files store it), or its only array."""
    import numpy as np

    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        name = "arr_0" if "arr_0" in names else names[0] if len(names) == 1 else None
        if name is None:
            raise ValueError(f"expected an array `arr_0` or a single array, got the arrays {names}")
        return archive[name]


def point_file(path: str) -> str:
    """The file a point-cloud media path reads: the path, or the pickled split an item `{file}::{index}` is in."""
    return path.rpartition(PICKLE_ITEM)[0] or path


def decode_point_cloud(path: str, options: ImportOptions):
    """One point file of a 3D benchmark as the point-cloud feature extractor takes it: an (points, 3 or 6)
    array, or a trimesh geometry for `.ply` / `.off`. A corrupt or unreadable file is a `ValueError` naming it."""
    import numpy as np

    from xllm.processing.feature_extraction_point_cloud_xllm import (
        check_cloud,
        load_mesh_file,
        load_npy_cloud,
    )

    if PICKLE_ITEM in path:
        file, index = point_file(path), path.rpartition(PICKLE_ITEM)[2]
        refuse_pickle_unless_allowed(file, options)
        points, _ = unpickled_split(file)
        if not index.isdigit() or int(index) >= len(points):
            raise ValueError(
                f"{path!r} names item {index} of {file!r}, which holds {len(points)} point clouds."
            )
        return check_cloud(np.asarray(points[int(index)], dtype=np.float64)[:, :3], path)
    suffix = Path(path).suffix.lower()
    if suffix not in POINT_FILE_SUFFIXES:
        raise ValueError(f"Point file {path!r} must end in one of {POINT_FILE_SUFFIXES}, got {suffix!r}.")
    try:
        if suffix in (".ply", ".off"):
            geometry = load_mesh_file(path)
            if len(getattr(geometry, "vertices", ())) == 0 and not getattr(geometry, "geometry", None):
                raise ValueError("no vertices")
            return geometry
        if suffix == ".txt":
            points = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)[:, :3]
        elif suffix == ".npz":
            points = npz_cloud(path)
        else:
            points = load_npy_cloud(path, path)
        return check_cloud(np.asarray(points, dtype=np.float64), path)
    except FileNotFoundError:
        raise
    except Exception as error:  # numpy, zipfile and trimesh raise format-specific errors for corrupt files
        raise ValueError(
            f"Point file {path!r} cannot be read as {suffix}: {type(error).__name__}: {error}"
        ) from error


def modelnet40_class(shape_id: str) -> str:
    """`night_stand_0201` -> `night_stand` (object3d_classification_datasets.py:60)."""
    return "_".join(shape_id.split("_")[:-1])


def read_modelnet40_test(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """ModelNet40 test from ULIP's `modelnet40_normal_resampled` folder (the files of
    lavis/configs/datasets/modelnet40/defaults_cls.yaml:41-49), as the builder `modelnet40_cls`
    (lavis/datasets/builders/object3d_classification_builder.py:12-19) has `ModelNetClassificationDataset`
    read it (lavis/datasets/datasets/object3d_classification_datasets.py:36-158; eval/vicuna7b/pc/
    modelnet40_classification.yaml:96-107): the 40 class names from `modelnet40_shape_names.txt` (:57),
    the 2468 shape ids (`airplane_0627`) from `modelnet40_test.txt` (:59), each shape's class its id
    without the number (:60), its points in `{media_dir}/{class}/{shape_id}.txt` (:63-64).
    `--annotations` names that folder or its `modelnet40_test.txt`; naming LAVIS's pickled
    `modelnet40_test_8192pts_fps.dat` instead reads the points and labels from it (only with
    `allow_pickle`), which is what LAVIS evaluates (`process_data = True`, :48, :81-84)."""
    annotations = Path(annotations)
    folder = annotations.parent if annotations.is_file() else annotations
    dat = annotations if annotations.suffix.lower() == ".dat" else None
    if dat is not None:
        refuse_pickle_unless_allowed(dat, options)
    classes = text_lines(annotation_file(folder, "modelnet40_shape_names.txt"))
    ids_path = annotations if annotations.suffix == ".txt" else annotation_file(folder, "modelnet40_test.txt")
    shape_ids = text_lines(ids_path)
    if dat is None:
        unknown = sorted({modelnet40_class(shape) for shape in shape_ids} - set(classes))
        if unknown:
            raise ValueError(
                f"{str(ids_path)!r} must list shape ids `<class>_<number>` of the classes in "
                f"modelnet40_shape_names.txt; {unknown} are not among them."
            )
        return [
            {
                "id": shape,
                "point_clouds": media_path(media_dir, f"{modelnet40_class(shape)}/{shape}.txt"),
                "label": modelnet40_class(shape),
                "classes": classes,
            }
            for shape in shape_ids
        ]
    import numpy as np

    points, labels = pickled_split(dat, options)
    if len(points) != len(shape_ids):
        raise ValueError(
            f"{str(dat)!r} holds {len(points)} point clouds, {str(ids_path)!r} lists {len(shape_ids)}."
        )
    labels = [int(np.asarray(label).reshape(-1)[0]) for label in labels]
    if not all(0 <= label < len(classes) for label in labels):
        raise ValueError(
            f"{str(dat)!r} must label each cloud with a class index below {len(classes)}, got {sorted(set(labels))}."
        )
    return [
        {
            "id": shape,
            "point_clouds": f"{dat.absolute()}{PICKLE_ITEM}{index}",
            "label": classes[label],
            "classes": classes,
        }
        for index, (shape, label) in enumerate(zip(shape_ids, labels, strict=True))
    ]


def objaverse_cloud(media_dir: Path, sample_id: str) -> str:
    """LAVIS's Objaverse point file: `{pc root}/{id}/{id}_8192.npz` (object3d_captioning_datasets.py:109-110)."""
    return media_path(media_dir, f"{sample_id}/{sample_id}_8192.npz")


def read_objaverse_cap3d(annotations: Path, media_dir: Path, options: ImportOptions) -> list[dict]:
    """LAVIS's Cap3D captions of Objaverse, `cap3d_cap_final_val.csv` (lavis/configs/datasets/objaverse/
    defaults_mm_cap.yaml:40-45; eval/vicuna7b/pc/objaverse_captioning.yaml:111-116 stores it as
    `objaverse/annotations/val.csv`; columns `sample_id, data`), as the builder
    `objaverse_mm_caption_instruct` (lavis/datasets/builders/object3d_caption_builder.py:40-47) has
    `ObjaverseCaptionEvalDataset` read it (lavis/datasets/datasets/object3d_captioning_datasets.py:
    99-135): one caption per object, the reference (`caption_key: 'data'`, :155 of the config); the id is
    `sample_id` (:156); the cloud `{media_dir}/{sample_id}/{sample_id}_8192.npz`."""
    path = annotation_file(annotations, "cap3d_cap_final_val.csv")
    return [
        {
            "id": record["sample_id"],
            "point_clouds": objaverse_cloud(media_dir, record["sample_id"]),
            "references": [record["data"]],
        }
        for record in csv_records(path, ("sample_id", "data"))
    ]


BENCHMARKS = (
    Benchmark(
        name="modelnet40_test",
        modality="point_cloud",
        task="classification",
        annotations="modelnet40_shape_names.txt + modelnet40_test.txt (ULIP's modelnet40_normal_resampled)",
        media="{class}/{shape_id}.txt (x,y,z,nx,ny,nz lines); or modelnet40_test_8192pts_fps.dat with --allow-pickle",
        read=read_modelnet40_test,
        decoding="vicuna7b/pc/modelnet40_classification",
        # LAVIS's `_classification` config ranks the 40 classes by likelihood (`predict_with_gen: False`,
        # eval/vicuna7b/pc/modelnet40_classification.yaml:76); `modelnet40_completion.yaml:75` generates.
        classify_by="likelihood",
        decode=decode_point_cloud,
        media_file=point_file,
        source="eval/vicuna7b/pc/modelnet40_classification.yaml:96-107; "
        "lavis/datasets/datasets/object3d_classification_datasets.py:36-158",
    ),
    Benchmark(
        name="objaverse_cap3d_test",
        modality="point_cloud",
        task="captioning",
        annotations="cap3d_cap_final_val.csv (LAVIS's Cap3D split of Objaverse)",
        media="{sample_id}/{sample_id}_8192.npz",
        read=read_objaverse_cap3d,
        decoding="vicuna7b/pc/objaverse_captioning",
        decode=decode_point_cloud,
        source="eval/vicuna7b/pc/objaverse_captioning.yaml:111-122; "
        "lavis/datasets/datasets/object3d_captioning_datasets.py:99-135",
    ),
)

__all__ = ["BENCHMARKS", "decode_point_cloud", "point_file", "read_modelnet40_test", "read_objaverse_cap3d"]
