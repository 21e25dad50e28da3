"""Images as the image processor takes them: files decoded here (a corrupt one is named), arrays checked."""

import os

import numpy as np
import torch
from transformers.image_utils import load_image


def checked_image(image, name: str):
    """One image ready for the image processor. Files are decoded here, so a corrupt one fails with its
    name; a 2-D (grayscale) array gets three equal channels, as the image processor's RGB conversion
    gives grayscale PIL images; empty images and arrays of other than real numbers are refused."""
    if isinstance(image, (str, os.PathLike)):
        try:
            return load_image(os.fspath(image))
        except (OSError, ValueError) as error:
            raise ValueError(
                f"`{name}` must be an image file, URL or base64 string that decodes; {os.fspath(image)[:200]!r} "
                f"did not ({error})"
            ) from error
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return checked_image_array(image, name)
    width, height = getattr(image, "width", 1), getattr(image, "height", 1)
    if width == 0 or height == 0:
        raise ValueError(f"`{name}` must have at least one pixel, got a {width}x{height} image")
    return image


def checked_image_array(image: np.ndarray | torch.Tensor, name: str) -> np.ndarray | torch.Tensor:
    """An image array of integers (0-255) or floats, (height, width) or with a channel axis."""
    if isinstance(image, torch.Tensor):
        real_numbers = not image.dtype.is_complex and image.dtype != torch.bool
    else:
        real_numbers = np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    if not real_numbers:
        raise TypeError(f"`{name}` must hold integers (0-255) or floats, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise ValueError(
            f"`{name}` must be a non-empty (height, width) or (height, width, channels) / (channels, height, "
            f"width) array, got shape {tuple(image.shape)}"
        )
    if image.ndim == 2:  # grayscale -> (height, width, 3) / (3, height, width)
        return (
            np.repeat(image[..., None], 3, axis=-1)
            if isinstance(image, np.ndarray)
            else image.expand(3, -1, -1)
        )
    return image


__all__ = ["checked_image", "checked_image_array"]
