"""The built-in demo dataset: scikit-learn's handwritten digits as PNG class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

DEMO_PIXELS = 32  # each 8x8 digit is written at this size
DONE_MARKER = ".complete"


def write_digits(folder: Path) -> Path:
    """Write the 1,797 digits as ``folder/<digit>/<n>.png`` once; later calls reuse them."""
    folder = Path(folder)
    if (folder / DONE_MARKER).exists():
        return folder
    digits = load_digits()
    for number, (image, label) in enumerate(zip(digits.images, digits.target)):
        grey = (255 - image * (255 / 16)).astype(np.uint8)  # dark ink on white paper
        picture = Image.fromarray(grey).resize((DEMO_PIXELS, DEMO_PIXELS), Image.BICUBIC)
        path = folder / str(label) / f"{number:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.convert("RGB").save(path)
    (folder / DONE_MARKER).write_text("written from sklearn.datasets.load_digits\n")
    return folder
