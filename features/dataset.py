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
    unreadable: tuple[tuple[str, str], ...] = ()  # (path, reason): listed but not stat-able
    warnings: tuple[str, ...] = ()

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


def _images_under(class_dir: Path, root: Path) -> tuple[list, list]:
    """Image files below ``class_dir`` (recursively, not following folder links).

    Returns ``(found, unreadable)``: (posix relpath, stat) pairs, and (relpath, reason)
    pairs for names whose target cannot be reached (a broken link or a link loop).
    """
    found, unreadable = [], []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if is_image_name(name):
                path = Path(dirpath) / name
                relpath = path.relative_to(root).as_posix()
                try:
                    found.append((relpath, path.stat()))
                except OSError as error:
                    unreadable.append((relpath, f"{type(error).__name__}: {error.strerror}"))
    return found, unreadable


def _has_split_layout(root: Path) -> bool:
    """True when root holds only train/, validation/ (and test/), each of class folders."""
    names = set(_subfolders(root))
    if not {"train", "validation"} <= names or not names <= set(SPLITS):
        return False
    return all(
        _subfolders(root / split) and not any(is_image_name(p.name) for p in (root / split).iterdir())
        for split in names
    )


def scan_dataset(root: Path | str, val_fraction: float = 0.2) -> Dataset:
    """List the images under ``root`` and give each a class and a split.

    Class indices follow sorted names of the class folders that hold images; an empty
    class folder is left out with a warning. Raises ``FeatureError`` when the folder is
    missing, fewer than two classes have images, or a split or class would be empty.
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
    layout, split_dirs, class_names, warnings = _layout(root)

    found, unreadable = {}, []
    for split_name, folder in split_dirs.items():
        for class_name in class_names:
            if (folder / class_name).is_dir():
                images, broken = _images_under(folder / class_name, root)
                found.setdefault(class_name, []).extend((split_name, *image) for image in images)
                unreadable += broken

    empty = [name for name in class_names if not found.get(name)]
    if empty and len(empty) < len(class_names):
        warnings.append(f"Class folder(s) with no images, not counted as classes: {', '.join(empty)}.")
    class_names = [name for name in class_names if found.get(name)]
    _check_classes(root, class_names)
    sources = [
        SourceFile(relpath, label, split_name or hashed_split(relpath, val_fraction),
                   stat.st_size, stat.st_mtime_ns)
        for label, name in enumerate(class_names)
        for split_name, relpath, stat in found[name]
    ]
    dataset = Dataset(root, tuple(class_names), layout, tuple(sorted(sources, key=lambda s: s.path)),
                      tuple(sorted(unreadable)), tuple(warnings))
    _check_splits(dataset)
    return dataset


def _layout(root: Path) -> tuple[str, dict[str, Path], list[str], list[str]]:
    """(layout, {split or "": folder}, candidate class names, warnings) for ``root``."""
    if not _has_split_layout(root):
        class_names = _subfolders(root)
        warnings = [f"Class folder named '{name}' in {root}: read as a class, since {root} is not "
                    "laid out as train/ and validation/ folders of class folders only."
                    for name in class_names if name in SPLITS]
        return "hashed", {"": root}, class_names, warnings
    split_dirs = {split: root / split for split in SPLITS if (root / split).is_dir()}
    class_names = _subfolders(root / "train")
    for folder in split_dirs.values():
        unknown = sorted(set(_subfolders(folder)) - set(class_names))
        if unknown:
            raise FeatureError(
                f"{folder} has class folders that train/ lacks: {', '.join(unknown)}. "
                "Every class needs training images; add them to train/ or remove them."
            )
    return "splits", split_dirs, class_names, []


def _check_classes(root: Path, class_names: list[str]) -> None:
    if not class_names:
        raise FeatureError(
            f"No images in {root} (formats: {', '.join(ALLOWLIST_FORMATS)}). "
            f"Lay the images out as {root}/<class>/*.jpg."
        )
    if len(class_names) < 2:
        raise FeatureError(
            f"Only one class with images in {root} ({class_names[0]}); a classifier needs at "
            "least two. Add a folder of images per class."
        )


def _check_splits(dataset: Dataset) -> None:
    train_labels = {s.label for s in dataset.sources if s.split == "train"}
    empty = [name for label, name in enumerate(dataset.class_names) if label not in train_labels]
    if empty:
        raise FeatureError(
            f"Class(es) with no training images in {dataset.root}: {', '.join(empty)}. "
            "Add training images to them or remove the folders."
        )
    if not dataset.indices("validation"):
        raise FeatureError(
            f"No validation images in {dataset.root}. Add a validation/ folder or raise "
            "--val-fraction."
        )
