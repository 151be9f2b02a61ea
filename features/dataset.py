"""Find the labelled images under a folder and assign each to a split.

Two layouts are understood::

    root/                         root/
      cats/a.jpg                    train/cats/a.jpg
      dogs/b.png                    train/dogs/b.png
                                    validation/cats/c.jpg
                                    test/dogs/d.jpg   (optional)

In the flat layout each file's split comes from a hash of its relative path, so
adding photos never moves old ones between splits.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from features.errors import FeatureError

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SourceFile:
    """One image: its path relative to the root, class index, split and stat."""

    path: str
    label: int
    split: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Dataset:
    """Every usable image path under ``root``, in a stable order.

    A source's index is its position in ``sources``; the store refers to images by it.
    """

    root: Path
    class_names: tuple[str, ...]
    layout: str  # "splits" (train/validation folders) or "hashed"
    sources: tuple[SourceFile, ...]

    def indices(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.sources) if s.split == split]

    def splits(self) -> list[str]:
        present = {s.split for s in self.sources}
        return [split for split in SPLITS if split in present]


def hashed_split(relative_path: str, val_fraction: float) -> str:
    """Stable split of one file from the sha1 of its relative path."""
    digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "validation" if position < val_fraction else "train"


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(ALLOWLIST_FORMATS)


def _subfolders(folder: Path) -> list[str]:
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_dir() and not entry.name.startswith(".")
    )


def _images_under(class_dir: Path, root: Path) -> list[tuple[str, os.stat_result]]:
    """Image files below ``class_dir`` (recursively), as (posix relpath, stat)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if is_image_name(name):
                path = Path(dirpath) / name
                try:
                    stat = path.stat()
                except OSError:  # broken symlink: nothing to read
                    continue
                found.append((path.relative_to(root).as_posix(), stat))
    return found


def _has_split_layout(root: Path) -> bool:
    names = set(_subfolders(root))
    return {"train", "validation"} <= names and all(
        _subfolders(root / split) for split in ("train", "validation")
    )


def scan_dataset(root: Path | str, val_fraction: float = 0.2) -> Dataset:
    """List the images under ``root`` and give each a class and a split.

    Class indices follow sorted class-folder names. Raises ``FeatureError`` when the
    folder is missing or empty, a class folder holds no image, or fewer than two
    classes are found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FeatureError(
            f"Data folder not found: {root}. Pass --data with a folder laid out as "
            "root/<class>/*.jpg."
        )
    if not 0.0 < val_fraction < 1.0:
        raise FeatureError(
            f"--val-fraction must be between 0 and 1 (exclusive). Received: {val_fraction}"
        )

    if _has_split_layout(root):
        layout = "splits"
        split_dirs = {split: root / split for split in SPLITS if (root / split).is_dir()}
        class_names = _subfolders(root / "train")
        for split, folder in split_dirs.items():
            unknown = sorted(set(_subfolders(folder)) - set(class_names))
            if unknown:
                raise FeatureError(
                    f"{folder} has class folders that train/ lacks: {', '.join(unknown)}. "
                    "Every class needs training images; add them to train/ or remove them."
                )
    else:
        layout = "hashed"
        split_dirs = {"": root}
        class_names = _subfolders(root)

    if not class_names:
        raise FeatureError(
            f"No class folders in {root}. Lay the images out as {root}/<class>/*.jpg "
            f"(formats: {', '.join(ALLOWLIST_FORMATS)})."
        )
    if len(class_names) < 2:
        raise FeatureError(
            f"Only one class folder in {root} ({class_names[0]}); a classifier needs at "
            "least two. Add a folder per class."
        )

    sources = []
    for split_name, folder in split_dirs.items():
        for label, class_name in enumerate(class_names):
            class_dir = folder / class_name
            if not class_dir.is_dir():
                continue
            for relpath, stat in _images_under(class_dir, root):
                split = split_name or hashed_split(relpath, val_fraction)
                sources.append(SourceFile(relpath, label, split, stat.st_size, stat.st_mtime_ns))

    dataset = Dataset(root, tuple(class_names), layout, tuple(sorted(sources, key=lambda s: s.path)))
    _check_every_class_has_images(dataset)
    return dataset


def _check_every_class_has_images(dataset: Dataset) -> None:
    if not dataset.sources:
        raise FeatureError(
            f"No images in {dataset.root} (formats: {', '.join(ALLOWLIST_FORMATS)}). "
            "Pass --data with a folder laid out as root/<class>/*.jpg."
        )
    counts = {label: 0 for label in range(len(dataset.class_names))}
    for source in dataset.sources:
        if source.split == "train":
            counts[source.label] += 1
    empty = [dataset.class_names[label] for label, n in counts.items() if n == 0]
    if empty:
        raise FeatureError(
            f"Class folder(s) with no training images in {dataset.root}: {', '.join(empty)}. "
            "Add images to them or remove the folders."
        )
    if not dataset.indices("validation"):
        raise FeatureError(
            f"No validation images in {dataset.root}. Add a validation/ folder or raise "
            "--val-fraction."
        )
