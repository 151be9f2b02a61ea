"""Decode one image file to an upright RGB array of a fixed size."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Pillow warns above this many pixels and refuses above twice as many: a decompression bomb.
Image.MAX_IMAGE_PIXELS = 100_000_000


def load_pixels(path: Path | str, image_size: int) -> np.ndarray:
    """Read ``path`` as uint8 RGB of shape (image_size, image_size, 3).

    The image is turned upright by its EXIF orientation, its first frame is used when
    it is animated, and it is resized bilinearly (JPEGs are first decoded at a reduced
    scale where that still leaves at least ``image_size`` pixels a side).
    Raises ``OSError`` or ``ValueError`` (with Pillow's reason) for files it cannot read.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image.draft("RGB", (image_size, image_size))
            image = ImageOps.exif_transpose(image)
            image = image.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)


def describe_error(error: BaseException) -> str:
    """A one-line reason for a file that could not be decoded."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
