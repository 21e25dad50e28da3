"""Point clouds of the world: a coloured 3D primitive of one of two sizes, sampled with trimesh.

Each item is a randomly rotated mesh (kept as a .ply file with vertex colours) and points sampled
uniformly on its surface, as an (points, 6) array of xyz and rgb in [0, 1]. Coordinates are not
normalised: a large object spans about 1 unit and a small one about half of that, so size is
readable from the points (an encoder that rescales to the unit sphere would erase it).
"""

import numpy as np

from .images import jittered_rgb

SIZE_SCALES = {"small": 0.5, "large": 1.0}


def unit_primitive(shape: str):
    """A trimesh primitive about 1 unit across, centred on the origin."""
    import trimesh

    makers = {
        "sphere": lambda: trimesh.creation.icosphere(subdivisions=2, radius=0.5),
        "cube": lambda: trimesh.creation.box(extents=(0.8, 0.8, 0.8)),
        "cylinder": lambda: trimesh.creation.cylinder(radius=0.4, height=1.0, sections=24),
        "cone": lambda: trimesh.creation.cone(radius=0.5, height=1.0, sections=24),
        "torus": lambda: trimesh.creation.torus(0.35, 0.15, major_sections=24, minor_sections=12),
    }
    if shape not in makers:
        raise ValueError(f"shape must be one of {sorted(makers)}, got {shape!r}")
    mesh = makers[shape]()
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    return mesh


def make_primitive(attributes: dict[str, str], rng: np.random.Generator):
    """The coloured, scaled and randomly rotated trimesh.Trimesh of an item (colour, shape, size)."""
    import trimesh

    mesh = unit_primitive(attributes["shape"])
    mesh.apply_scale(SIZE_SCALES[attributes["size"]] * rng.uniform(0.9, 1.1))
    mesh.apply_transform(trimesh.transformations.random_rotation_matrix(rand=rng.random(3)))
    mesh.visual.vertex_colors = (*jittered_rgb(attributes["colour"], rng), 255)
    return mesh


def sample_point_cloud(mesh, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` points uniform on the mesh surface with the mesh's colour: float32 (count, 6) xyz+rgb."""
    import trimesh

    points, _ = trimesh.sample.sample_surface(mesh, count, seed=rng)  # (count, 3)
    rgb = np.broadcast_to(mesh.visual.vertex_colors[0, :3] / 255.0, (count, 3))
    return np.concatenate([points, rgb], axis=1).astype(np.float32)
