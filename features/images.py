"""Decode one image file to an upright RGB array of a fixed size."""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

OBJECT_ADDRESS = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")

# Pillow's own limit (about 89 M pixels): a larger image is refused before it is decoded
# (turned from Pillow's warning into an error below), so a decompression bomb costs nothing.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
# No photo comes near this; a larger "image" is refused before a byte of it is read.
MAX_FILE_BYTES = 256 * 2**20
WHITE = (255, 255, 255)
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def load_pixels(path: Path | str, image_size: int) -> np.ndarray:
    """Read ``path`` as uint8 RGB of shape (image_size, image_size, 3).

    The image is turned upright by its EXIF orientation, its first frame is used when
    it is animated, transparency is laid over white, 16-bit samples are scaled to 8
    bits, and it is resized bilinearly (JPEGs are first decoded at a reduced scale
    where that still leaves at least ``image_size`` pixels a side).
    Raises ``OSError``, ``ValueError`` or ``Image.DecompressionBombError`` (with
    Pillow's reason) for files it cannot or will not read, among them anything but a
    regular file (refused without blocking) and files over ``MAX_FILE_BYTES``.
    """
    with open_regular(path) as file:
        data = file.read(MAX_FILE_BYTES)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (image_size, image_size))
            image = _to_rgb(ImageOps.exif_transpose(image))
            return np.asarray(image.resize((image_size, image_size), Image.BILINEAR), dtype=np.uint8)


def open_regular(path: Path | str) -> BinaryIO:
    """Open ``path`` for reading in binary, refusing (``ValueError``) without blocking a
    file that is not regular (a FIFO, socket, device or folder) or is over ``MAX_FILE_BYTES``.

    The path is checked before it is opened (a socket cannot be opened at all), and the
    opened file again, since it may have been swapped in between; it is opened
    non-blocking so that a FIFO or device cannot stall the open itself.
    """
    _refuse_irregular(os.stat(path))
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        _refuse_irregular(os.fstat(descriptor))
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _refuse_irregular(info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"not a regular file but {file_kind(info.st_mode)}; not read")
    if info.st_size > MAX_FILE_BYTES:
        raise ValueError(f"{info.st_size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB "
                         "limit for one image file; not read")


def file_kind(mode: int) -> str:
    """What a file that is not regular is, from its ``st_mode``: "a FIFO", "a socket", ..."""
    return next((name for is_kind, name in _KINDS if is_kind(mode)), "a special file")


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
    """A one-line reason for a file that could not be decoded, the same on every run (Pillow
    names the in-memory buffer it read from by its address, which is dropped)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = OBJECT_ADDRESS.sub("", text).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
