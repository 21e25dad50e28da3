"""Images of the world: one flat shape with a colour, a size and a position, drawn with PIL.

Shapes are drawn at 4x resolution and downsampled, which gives smooth (anti-aliased) edges.
Small random jitter of colour, size, position and rotation makes items of one attribute
combination differ, so a model has to read attributes rather than look up pixels.
"""

import numpy as np
from PIL import Image, ImageDraw

COLOUR_RGB = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
}
BACKGROUND_RGB = (24, 24, 24)

# Centres and radii as fractions of the image side.
POSITION_CENTRES = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "centre": (0.5, 0.5),
}
SIZE_RADII = {"small": 0.13, "large": 0.23}
SUPERSAMPLING = 4


def shape_outline(
    shape: str, centre: tuple[float, float], radius: float, angle: float
) -> list[tuple[float, float]]:
    """Polygon vertices of `shape` (circle, square, triangle or star) inscribed in a circle of
    `radius` around `centre`, rotated by `angle` radians."""
    corners = {"circle": 48, "square": 4, "triangle": 3, "star": 10}
    if shape not in corners:
        raise ValueError(f"shape must be one of {sorted(corners)}, got {shape!r}")
    count = corners[shape]
    # Squares sit flat (start at 45 degrees), triangles and stars point up (start at -90 degrees).
    start = np.pi / 4 if shape == "square" else -np.pi / 2
    turns = start + angle + 2 * np.pi * np.arange(count) / count
    radii = (
        np.where(np.arange(count) % 2 == 1, 0.45 * radius, radius)
        if shape == "star"
        else np.full(count, radius)
    )
    return list(zip(centre[0] + radii * np.cos(turns), centre[1] + radii * np.sin(turns), strict=True))


def draw_shape(
    shape: str, rgb: tuple[int, int, int], centre: tuple[float, float], radius: float, angle: float, side: int
) -> Image.Image:
    """A `side` x `side` RGB image of one filled shape on the background; centre and radius in pixels."""
    big = side * SUPERSAMPLING
    canvas = Image.new("RGB", (big, big), BACKGROUND_RGB)
    scaled_centre = (centre[0] * SUPERSAMPLING, centre[1] * SUPERSAMPLING)
    outline = shape_outline(shape, scaled_centre, radius * SUPERSAMPLING, angle)
    ImageDraw.Draw(canvas).polygon(outline, fill=rgb)
    return canvas.resize((side, side), Image.Resampling.BOX)


def jittered_rgb(colour: str, rng: np.random.Generator, spread: int = 12) -> tuple[int, int, int]:
    """The colour's RGB with each channel moved by at most `spread`."""
    rgb = np.array(COLOUR_RGB[colour]) + rng.integers(-spread, spread + 1, size=3)
    return tuple(int(c) for c in np.clip(rgb, 0, 255))


def render_image(attributes: dict[str, str], rng: np.random.Generator, side: int = 64) -> Image.Image:
    """The image of an item with attributes colour, shape, size and position."""
    radius = SIZE_RADII[attributes["size"]] * side * rng.uniform(0.9, 1.1)
    centre_x, centre_y = POSITION_CENTRES[attributes["position"]]
    jitter = rng.uniform(-0.04, 0.04, size=2) * side
    centre = (centre_x * side + jitter[0], centre_y * side + jitter[1])
    angle = np.deg2rad(rng.uniform(-15, 15))
    return draw_shape(
        attributes["shape"], jittered_rgb(attributes["colour"], rng), centre, radius, angle, side
    )
