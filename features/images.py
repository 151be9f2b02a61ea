"""Decode one image file to an upright RGB array of a fixed size."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Pillow's own limit (about 89 M pixels): a larger image is refused before it is decoded
# (turned from Pillow's warning into an error below), so a decompression bomb costs nothing.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
WHITE = (255, 255, 255)


def load_pixels(path: Path | str, image_size: int) -> np.ndarray:
    """Read ``path`` as uint8 RGB of shape (image_size, image_size, 3).

    The image is turned upright by its EXIF orientation, its first frame is used when
    it is animated, transparency is laid over white, 16-bit samples are scaled to 8
    bits, and it is resized bilinearly (JPEGs are first decoded at a reduced scale
    where that still leaves at least ``image_size`` pixels a side).
    Raises ``OSError``, ``ValueError`` or ``Image.DecompressionBombError`` (with
    Pillow's reason) for files it cannot or will not read.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image.draft("RGB", (image_size, image_size))
            image = _to_rgb(ImageOps.exif_transpose(image))
            return np.asarray(image.resize((image_size, image_size), Image.BILINEAR), dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I"):  # 16- or 32-bit greyscale: keep the top 8 bits of 16
        samples = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((np.minimum(samples, 65535) >> 8).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def describe_error(error: BaseException) -> str:
    """A one-line reason for a file that could not be decoded."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
