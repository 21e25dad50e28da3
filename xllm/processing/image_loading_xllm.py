"""Images as the image processor takes them: files, bytes and data URIs decoded here (a corrupt one is
named), arrays checked, transparency reported."""

import io
import os
import warnings

import numpy as np
import PIL.Image
import torch
from transformers.image_utils import load_image

from .media_bytes_xllm import encoded_media


def checked_image(image, name: str):
    """One image ready for the image processor. Files, bytes, data URIs and base64 are decoded here, so a
    corrupt one fails with its name (http(s) URLs are fetched by transformers' `load_image`); a 2-D
    (grayscale) array gets three equal channels, as the image processor's RGB conversion gives grayscale PIL
    images; empty images and arrays of other than real numbers are refused; an alpha channel is reported,
    since the image processor composites it onto white."""
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        image = decoded_image(image, name)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return checked_image_array(image, name)
    if isinstance(image, PIL.Image.Image):
        return checked_pil_image(image, name)
    width, height = getattr(image, "width", 1), getattr(image, "height", 1)
    if width == 0 or height == 0:
        raise ValueError(f"`{name}` must have at least one pixel, got a {width}x{height} image")
    return image


def checked_pil_image(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    """A PIL image with at least one pixel; an alpha channel is reported."""
    if image.width == 0 or image.height == 0:
        raise ValueError(f"`{name}` must have at least one pixel, got a {image.width}x{image.height} image")
    if has_transparency(image):
        warnings.warn(
            f"`{name}` has an alpha channel (mode {image.mode}); it is dropped: the image processor composites "
            "the image onto white and reads RGB",
            stacklevel=5,
        )
    return image


def decoded_image(source, name: str) -> PIL.Image.Image:
    """A PIL image from a path, URL, data URI, base64 string or encoded bytes."""
    shown = (
        f"{len(source)} bytes"
        if isinstance(source, (bytes, bytearray, memoryview))
        else repr(os.fspath(source)[:200])
    )
    try:
        encoded = encoded_media(os.fspath(source) if isinstance(source, os.PathLike) else source, name)
        if encoded is None:
            return load_image(os.fspath(source))
        image = PIL.Image.open(io.BytesIO(encoded[0]))
        image.load()
        return image
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise ValueError(
            f"`{name}` must be an image file, URL, data URI, base64 string or bytes that decodes; {shown} did not "
            f"({error})"
        ) from error


def has_transparency(image: PIL.Image.Image) -> bool:
    return "A" in image.getbands() or image.info.get("transparency") is not None


def checked_image_array(image: np.ndarray | torch.Tensor, name: str) -> np.ndarray | torch.Tensor:
    """An image array of integers (0-255) or floats, (height, width) or with a channel axis."""
    if isinstance(image, torch.Tensor):
        real_numbers = not image.dtype.is_complex and image.dtype != torch.bool
    else:
        real_numbers = (
            image.dtype.kind in "iuf"
        )  # signed, unsigned integers or floats (not bool, complex, objects)
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
    channels_last = image.shape[-1] == 4
    if channels_last or (image.shape[0] == 4 and image.shape[-1] > 4):  # RGBA: the alpha channel is dropped
        warnings.warn(
            f"`{name}` has 4 channels of shape {tuple(image.shape)}; the 4th (alpha) is dropped and RGB is kept",
            stacklevel=4,
        )
        return image[..., :3] if channels_last else image[:3]
    return image


__all__ = ["checked_image", "checked_image_array"]
