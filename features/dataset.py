"""Find the labelled images under a folder and assign each to a split.

Three layouts are understood::

    root/                 root/                             root/
      cats/a.jpg            train/cats/a.jpg                  cats/train/a.jpg
      dogs/b.png            train/dogs/b.png                  cats/val/c.jpg
                            validation/cats/c.jpg             dogs/train/b.png
                            test/dogs/d.jpg   (optional)      dogs/test/d.jpg

The third (class folders of split folders) is read by split only when every class folder
holds split folders alone, a training one among them; otherwise each class's photos are pooled.
Class folders whose names hold split words for training and another split (``seg_train``,
``seg_test``) are split folders misnamed: refused unless the layout is given as flat.

Split folders may be named, in any case, ``train``/``training``, ``val``/``valid``/
``validation``/``dev`` and ``test``/``testing``. In the flat layout, and for the training
folder of a split layout without a validation folder, each file's split comes from a hash
of its relative path, so adding photos never moves old ones between splits, except that a
class keeps at least one training photo and, with two or more, one validation photo
(``carved_splits``).

Hostile entries are never opened while scanning: anything that is not a regular file, a
link to a folder or an unreadable folder is listed in ``Dataset.unreadable`` with its reason.
Images outside any class folder (a ``test/`` folder of unlabelled photos) have no label: they
are listed in ``Dataset.unlabelled`` and left out. Hidden entries and the folders operating
systems and file servers leave in photo folders (``__MACOSX``, ``@eaDir``, ...) are passed
over. A folder linked in as a class or split, and a photo under two classes, are refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from features.errors import FeatureError
from features.images import file_kind, load_pixels, open_regular
from features.spec import Layout

ALLOWLIST_FORMATS = (".avif", ".bmp", ".gif", ".jfif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")
# Photo formats Pillow has no decoder for: skipped with a reason that says so, not passed over.
UNDECODED_FORMATS = (".heic", ".heif")
SPLITS = ("train", "validation", "test")
SPLIT_FOLDER_NAMES = {
    "train": "train", "training": "train",
    "val": "validation", "valid": "validation", "validation": "validation", "dev": "validation",
    "test": "test", "testing": "test",
}
HASH_CHUNK = 2**20
# Folders that archivers, file servers and operating systems write beside photos (macOS zip
# metadata, Synology thumbnails, Windows' recycle bin and volume data), compared lower-cased:
# never classes, never photos.
SYSTEM_FOLDERS = frozenset({"__macosx", "@eadir", "$recycle.bin", "system volume information"})


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
    Paths are ``str`` as ``os.listdir`` gives them: bytes that are not UTF-8 are kept as
    surrogate escapes (``os.fsencode`` gives the name back).
    """

    root: Path
    class_names: tuple[str, ...]
    layout: str  # "splits" (train/validation folders) or "hashed"
    sources: tuple[SourceFile, ...]
    unreadable: tuple[tuple[str, str], ...] = ()  # (path, reason): entries left out, never opened
    unlabelled: tuple[str, ...] = ()  # images outside any class folder, left out, never opened
    warnings: tuple[str, ...] = ()
    twins: tuple[tuple[int, ...], ...] = ()  # source indices of files with the same bytes in one class

    def indices(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.sources) if s.split == split]

    def splits(self) -> list[str]:
        present = {s.split for s in self.sources}
        return [split for split in SPLITS if split in present]


@dataclass
class _Plan:
    """The folders to walk: per class, (split, folder) pairs, split "" meaning by hash."""

    layout: str
    folders: dict[str, list[tuple[str, Path]]]
    unlabelled: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def hash_position(relative_path: str) -> float:
    """Where the sha1 of a file's relative path (its bytes on disk) falls in [0, 1)."""
    digest = hashlib.sha1(os.fsencode(relative_path)).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hashed_split(relative_path: str, val_fraction: float) -> str:
    """Stable split of one file from its ``hash_position``."""
    return "validation" if hash_position(relative_path) < val_fraction else "train"


def carved_splits(paths: list[str], val_fraction: float, first_of: dict[str, str]) -> dict[str, str]:
    """The split of each of one class's ``paths``: the ``hashed_split`` of its set of copies' first
    path (``first_of``; a path without copies is its own), except where that leaves the class with
    no training photo (the set nearest the hash's boundary goes to training) or, with two sets or
    more, no validation photo (the set nearest it goes to validation). On a few photos a class
    would otherwise train on nothing, or go unmeasured."""
    keys = {path: first_of.get(path, path) for path in paths}
    position = {key: hash_position(key) for key in keys.values()}
    split = {key: "validation" if place < val_fraction else "train" for key, place in position.items()}
    if split and "train" not in split.values():
        split[max(position, key=position.get)] = "train"
    if len(split) > 1 and "validation" not in split.values():
        split[min(position, key=position.get)] = "validation"
    return {path: split[key] for path, key in keys.items()}


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(ALLOWLIST_FORMATS)


IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def has_image_signature(path: str) -> bool:
    """True when the regular file at ``path`` starts like a JPEG, PNG, GIF, BMP, TIFF or WebP."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return head.startswith(IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def split_of(folder_name: str) -> str | None:
    """The split a folder name stands for ("train", "validation", "test"), else None."""
    return SPLIT_FOLDER_NAMES.get(folder_name.lower())


def splits_named_in(folder_name: str) -> set[str]:
    """The splits that words of ``folder_name`` (split at anything not a letter or digit) name:
    {"train"} for ``seg_train``, {"test"} for ``Test Set``."""
    return {split_of(word) for word in re.split(r"[^0-9a-z]+", folder_name.lower())} - {None}


def shown(path: Path | str) -> str:
    """``path`` as printable text: bytes that are not UTF-8 appear as ``\\xff`` escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _reason(error: OSError) -> str:
    return f"{type(error).__name__}: {error.strerror or error}"


def _relative(path: str | Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def first_names(names: list, most: int) -> str:
    """The first ``most`` of ``names``, ``shown`` and comma-separated, then " ..." where there are more."""
    return ", ".join(map(shown, names[:most])) + (" ..." if len(names) > most else "")


def is_passed_over(name: str) -> bool:
    """Whether an entry called ``name`` is hidden or one of ``SYSTEM_FOLDERS``: never looked into."""
    return name.startswith(".") or name.lower() in SYSTEM_FOLDERS


def _entries(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder`` that are not ``is_passed_over``, sorted by name."""
    with os.scandir(folder) as scan:
        return sorted((entry for entry in scan if not is_passed_over(entry.name)), key=lambda e: e.name)


def _list_folder(folder: Path, root: Path) -> tuple[list[str], list[str]]:
    """(names of the real subfolders, relative paths of the images lying loose) of ``folder``,
    the data root or a split folder. A link to a folder here is refused: a linked class or
    split folder repeats its photos under a second class or in a second split."""
    try:
        entries = _entries(folder)
    except OSError as error:
        raise FeatureError(f"Cannot read the folder {shown(folder)} ({_reason(error)}). "
                           "Make it readable or pass another `data`.") from None
    folders, loose = [], []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            folders.append(entry.name)
        elif entry.is_symlink() and entry.is_dir():
            raise FeatureError(
                f"{shown(entry.path)} is a link to a folder, which would repeat its photos under a "
                "second class or split. Replace the link with a real folder (move or copy the photos).")
        elif is_image_name(entry.name):
            loose.append(_relative(entry.path, root))
    return folders, loose


def _walk_class(folder: Path, root: Path) -> tuple[list, list]:
    """Image files below a class folder, found without opening any file or following links
    to folders.

    Returns ``(found, skipped)``: (posix relpath, stat) pairs of images that are, or link
    to, regular files, and (relpath, reason) pairs for entries left out: an unreadable
    folder, a link to a folder, a broken link or an image name that is not a regular file.
    """
    found, skipped, pending = [], [], [folder]
    while pending:
        current = pending.pop()
        try:
            entries = _entries(current)
        except OSError as error:
            skipped.append((_relative(current, root), f"folder not read ({_reason(error)})"))
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
                continue
            result = _inspect(entry)
            if isinstance(result, str):
                skipped.append((_relative(entry.path, root), result))
            elif result is not None:
                found.append((_relative(entry.path, root), result))
    return found, skipped


def _inspect(entry: os.DirEntry) -> os.stat_result | str | None:
    """The stat of an image entry that is (or links to) a regular file, the reason to skip
    it, or None for an entry that is not an image. An image name is judged by ``stat``
    alone, never opened; a regular file without an image extension (``n9151jpg``, a photo
    that lost its dot) is an image when its first bytes are an image format's signature."""
    if entry.name.startswith("."):
        return None
    try:
        info = os.stat(entry.path)
    except OSError as error:
        return _reason(error) if is_image_name(entry.name) else None
    if stat.S_ISDIR(info.st_mode):  # only a link: real folders are walked
        return "link to a folder, not followed"
    if entry.name.lower().endswith(UNDECODED_FORMATS):
        return f"{entry.name.rsplit('.', 1)[-1].upper()} is not a format this tool decodes; convert it to JPEG or PNG"
    if not is_image_name(entry.name):
        return info if stat.S_ISREG(info.st_mode) and has_image_signature(entry.path) else None
    if not stat.S_ISREG(info.st_mode):
        return f"not a regular file but {file_kind(info.st_mode)}; not opened"
    return info


def scan_dataset(root: Path | str, val_fraction: float = 0.2, layout: str = "auto") -> Dataset:
    """List the images under ``root`` and give each a class and a split.

    ``layout`` is "flat" (every folder is a class), "split" (split folders of class
    folders) or "auto": split when every folder of ``root`` is named as a split, flat when
    none is (class folders of split folders read by split, as the module says); a mix is
    refused. Class indices follow sorted names of the class folders that hold images; an
    empty class folder is left out with a warning. Raises ``FeatureError``
    when the folder is missing, fewer than two classes have images, a split or class would
    be empty, a class or split folder is a link, or one file is under two classes.
    """
    root = Path(root)
    _check_arguments(root, val_fraction, layout)
    plan = _plan(root, val_fraction, layout)
    found = {}
    for class_name, folders in plan.folders.items():
        for split_name, folder in folders:
            images, skipped = _walk_class(folder, root)
            found.setdefault(class_name, []).extend((split_name, *image) for image in images)
            plan.skipped += skipped

    empty = [name for name in plan.folders if not found.get(name)]
    if empty and len(empty) < len(plan.folders):
        plan.warnings.append("Class folder(s) with no images, not counted as classes: "
                             f"{', '.join(map(shown, empty))}.")
    class_names = [name for name in plan.folders if found.get(name)]
    _check_classes(root, class_names, found, plan.unlabelled)
    _check_duplicates(root, found)
    first_of = _twins(root, found)  # a set of copies takes the split of its first path
    carved = {path: split for name in class_names for path, split in carved_splits(
        [relpath for split_name, relpath, _ in found[name] if not split_name], val_fraction, first_of).items()}
    sources = [
        SourceFile(relpath, label, split_name or carved[relpath], info.st_size, info.st_mtime_ns)
        for label, name in enumerate(class_names)
        for split_name, relpath, info in found[name]
    ]
    unnamed = sorted(s.path for s in sources if not is_image_name(s.path.rsplit("/", 1)[-1]))
    if unnamed:
        plan.warnings.append(f"{len(unnamed)} file(s) without an image extension read as images by their "
                             f"content: {first_names(unnamed, 5)}.")
    sources = sorted(sources, key=lambda s: s.path)
    twins = _twin_indices(sources, first_of)
    plan.warnings += _twin_warnings(sources, twins)
    plan.warnings += _unlabelled_warnings(plan.unlabelled)
    dataset = Dataset(root, tuple(class_names), plan.layout, tuple(sources), tuple(sorted(plan.skipped)),
                      tuple(sorted(plan.unlabelled)), tuple(plan.warnings), twins)
    _check_splits(dataset)
    return dataset


def _unlabelled_warnings(paths: list[str]) -> list[str]:
    """What to say of images outside any class folder: how many, where, and that they are not used."""
    if not paths:
        return []
    return [f"{len(paths)} image(s) lie outside any class folder ({first_names(sorted(paths), 3)}): with no label "
            "they are left out. Move labelled ones into their class folder; `predict` classifies unlabelled ones."]


def _check_arguments(root: Path, val_fraction: float, layout: str) -> None:
    if root.is_file():
        archive = root.name.lower().endswith(ARCHIVE_SUFFIXES)
        raise FeatureError(
            f"{shown(root)} is a file, not a folder. "
            f"{'Unpack the archive and pass' if archive else 'Pass'} `data` a folder laid out as root/<class>/*.jpg."
        )
    if not root.is_dir():
        raise FeatureError(
            f"Data folder not found: {shown(root)}. Pass `data` with a folder laid out as "
            "root/<class>/*.jpg."
        )
    if not 0.0 < val_fraction < 1.0:
        raise FeatureError(
            f"`val_fraction` must be between 0 and 1 (exclusive). Received: {val_fraction}"
        )
    Layout.parse(layout, "layout")


def _plan(root: Path, val_fraction: float, layout: str) -> _Plan:
    """The layout of ``root`` and the class folders to walk (see ``scan_dataset``)."""
    names, loose = _list_folder(root, root)
    split_named = [name for name in names if split_of(name)]
    others = [name for name in names if not split_of(name)]
    if layout == "flat" or (layout == "auto" and not split_named):
        return _class_folders_plan(root, names, val_fraction, loose, guess=layout == "auto")
    if split_named and others:
        raise FeatureError(
            f"{shown(root)} mixes split folders ({', '.join(map(shown, split_named))}) with other "
            f"folders ({', '.join(map(shown, others))}). Move the other folders into a split "
            "folder or out of it, or pass `layout` flat to read every folder as a class.")
    return _split_plan(root, _split_folders(root, names), val_fraction, loose)


def _class_folders_plan(root: Path, names: list[str], val_fraction: float, loose: list[str], guess: bool) -> _Plan:
    """``root``'s folders ``names`` as classes: pooled and split by hash, or (when ``guess``ing the
    layout and every class folder holds split folders alone) read by split. Guessing, folders
    named like splits are refused as classes."""
    by_class = {name: _class_splits(root / name) for name in names} if guess else {}
    if by_class and all(splits for splits, _ in by_class.values()):
        return _class_first_plan(root, {name: splits for name, (splits, _) in by_class.items()}, val_fraction, loose)
    named_in = {name: named for name in names if (named := splits_named_in(name))}
    named = set().union(*named_in.values())
    if guess and "train" in named and len(named) > 1:
        raise FeatureError(
            f"Folders of {shown(root)} are named like splits, not classes ({', '.join(map(shown, named_in))}). "
            "Split folders must be named train/, val/ or test/ and hold the class folders: rename them "
            "so, or pass `layout` flat to read each folder as a class.")
    pooled = [name for name, (_, split_named_inside) in by_class.items() if split_named_inside]
    warnings = [f"{shown(pooled[0])}/ holds split folders, but not every class folder holds them alone: the "
                "photos below each class folder are read as one pool and split by hash. To keep the splits, "
                "lay out root/<split>/<class>/ or give every class folder train/ (and val/) folders only."
                ] if pooled else []
    return _Plan("hashed", {name: [("", root / name)] for name in names}, loose,
                 warnings=warnings + _sibling_splits_warnings(root))


def _sibling_splits_warnings(root: Path) -> list[str]:
    """Where ``root`` is itself a split folder (``training/``) beside others (``validation/``),
    that it is read alone, and the `data` that reads them all."""
    if not split_of(root.name):
        return []
    try:
        siblings = [entry.name for entry in _entries(root.parent)
                    if entry.name != root.name and split_of(entry.name) and entry.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    return [f"{shown(root)} is a split folder read alone (beside it, not read: {', '.join(map(shown, siblings))}); "
            f"its photos are split by hash. To use the split folders as they are, pass `data` {shown(root.parent)}."
            ] if siblings else []


def _class_splits(folder: Path) -> tuple[dict[str, str], bool]:
    """({split: subfolder name} when class ``folder`` holds split folders alone, one per split, a
    training one among them, and no image of its own, else {}; whether any subfolder is split-named)."""
    try:
        entries = _entries(folder)
    except OSError:  # the walk reports it
        return {}, False
    subfolders = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
    by_split = {split_of(name): name for name in subfolders}
    alone = (bool(subfolders) and None not in by_split and len(by_split) == len(subfolders) and "train" in by_split
             and not any(is_image_name(entry.name) for entry in entries if not entry.is_dir(follow_symlinks=False)))
    return (by_split if alone else {}), bool(by_split.keys() - {None})


def _class_first_plan(root: Path, splits: dict[str, dict[str, str]], val_fraction: float,
                      unlabelled: list[str]) -> _Plan:
    """root/<class>/<split>/: each class's ``splits`` (split -> subfolder name); with no validation
    folder in any class, a stable hash holds ``val_fraction`` of each class's training images out."""
    carve = not any("validation" in by_split for by_split in splits.values())
    folders = {name: [("" if carve and split_name == "train" else split_name, root / name / folder)
                      for split_name, folder in by_split.items()] for name, by_split in splits.items()}
    first = next(iter(splits))
    warnings = [f"The class folders of {shown(root)} hold split folders (e.g. "
                f"{', '.join(shown(f'{first}/{folder}') for folder in splits[first].values())}): read as "
                "root/<class>/<split>/."]
    if carve:
        warnings.append(f"No validation folder in the class folders of {shown(root)}: {val_fraction:.0%} of each "
                        "class's training folder is held out for validation by a stable hash of each path.")
    return _Plan("splits", folders, unlabelled, warnings=warnings)


def _split_folders(root: Path, names: list[str]) -> dict[str, str]:
    """{split: folder name} of ``root``'s split folders; at most one per split, and a
    training one is required."""
    by_split = {}
    for name in names:
        if split_of(name):
            by_split.setdefault(split_of(name), []).append(name)
    for split_name, folders in by_split.items():
        if len(folders) > 1:
            raise FeatureError(
                f"{' and '.join(map(shown, folders))} in {shown(root)} are both {split_name} split "
                "folders. Merge them into one.")
    if "train" not in by_split:
        raise FeatureError(
            f"No training split folder (train/ or training/) in {shown(root)}; found: "
            f"{', '.join(map(shown, names)) or 'no folders'}. Add one, or pass `layout` flat to "
            "read every folder as a class.")
    return {split_name: by_split[split_name][0] for split_name in SPLITS if split_name in by_split}


def _split_plan(root: Path, split_dirs: dict[str, str], val_fraction: float, unlabelled: list[str]) -> _Plan:
    """Classes are the training folder's class folders (another split's folder of a class may
    differ from it in case or Unicode normalisation alone, ``training_classes``); without a
    validation folder, a stable hash holds ``val_fraction`` of the training images out for
    validation."""
    classes = {}
    for split_name, folder in split_dirs.items():
        classes[split_name], loose = _list_folder(root / folder, root)
        unlabelled += loose
    train = split_dirs["train"]
    warnings = []
    for split_name, folder in split_dirs.items():
        classes[split_name] = training_classes(classes[split_name], classes["train"])
        unknown = sorted(name for name, known in classes[split_name].items() if known is None)
        if unknown:
            raise FeatureError(
                f"{shown(root / folder)} has class folders that {shown(train)}/ lacks: "
                f"{', '.join(map(shown, unknown))}. Every class needs training images; add them "
                f"to {shown(train)}/ or remove them.")
        renamed = [f"{Path(folder) / name} as {known}" for name, known in classes[split_name].items() if name != known]
        if renamed:
            warnings.append(f"Class folders named as in {shown(train)}/ but for case or accents are read as "
                            f"its classes: {first_names(renamed, 5)}.")
    carve = "validation" not in split_dirs
    folders = {
        name: [("" if carve and split_name == "train" else split_name, root / folder / found)
               for split_name, folder in split_dirs.items()
               for found, known in classes[split_name].items() if known == name]
        for name in classes["train"]
    }
    if carve:
        warnings.append(f"No validation folder in {shown(root)}: {val_fraction:.0%} of {shown(train)}/ is "
                        "held out for validation by a stable hash of each path.")
    return _Plan("splits", folders, unlabelled, warnings=warnings)


def training_classes(names: list[str], training: list[str]) -> dict[str, str | None]:
    """Each of a split's class folder ``names`` -> the ``training`` class it holds: the same
    name, else the one training class whose name differs from it only in case or Unicode
    normalisation (``train/Cats`` and ``val/cats``; a Mac's decomposed accents); None if none."""
    def key(name: str) -> str:
        return unicodedata.normalize("NFC", name).casefold()

    by_key: dict[str, list[str]] = {}
    for name in training:
        by_key.setdefault(key(name), []).append(name)
    matches = {}
    for name in names:
        candidates = [name] if name in training else by_key.get(key(name), [])
        matches[name] = candidates[0] if len(candidates) == 1 else None
    return matches


def _check_classes(root: Path, class_names: list[str], found: dict[str, list], unlabelled: list[str]) -> None:
    if not class_names:
        where = (f"{len(unlabelled)} image(s) in {shown(root)} lie outside any class folder" if unlabelled else
                 f"No images in {shown(root)} (formats: {', '.join(ALLOWLIST_FORMATS)})")
        raise FeatureError(f"{where}. Lay the images out as {shown(root)}/<class>/*.jpg.{_label_file_hint(root)}")
    if len(class_names) < 2:
        raise FeatureError(
            f"Only one class with images in {shown(root)} ({shown(class_names[0])}); a classifier "
            "needs at least two. Add a folder of images per class."
            f"{_nested_classes_hint(root, class_names[0], found[class_names[0]])}{_label_file_hint(root)}"
        )


def _label_file_hint(root: Path) -> str:
    """Where ``root`` holds a CSV or text file (labels listed in a file), that such labels are not read."""
    listed = sorted(path.name for path in root.iterdir() if path.suffix.lower() in (".csv", ".tsv", ".txt")
                    and path.is_file())
    return (f" Labels listed in a file ({', '.join(map(shown, listed[:2]))}) are not read: each class is the "
            "folder its photos lie in.") if listed else ""


def _nested_classes_hint(root: Path, name: str, images: list) -> str:
    """Where ``name``, the one class folder of ``root``, holds no image of its own but subfolders of
    them (an archive unpacked into a folder of its name), or split folders holding such subfolders
    (read as one class laid out class first: ``dataset/{train,val}/<class>/``), the `data` that
    takes those subfolders as classes."""
    depth = 2 if any(split_name for split_name, _, _ in images) else 1  # below its split folders
    subfolders = {Path(relpath).parts[depth] if len(Path(relpath).parts) > depth + 1 else None
                  for _, relpath, _ in images}
    if None in subfolders or len(subfolders) < 2:
        return ""
    listed = ", ".join(map(shown, sorted(subfolders)[:3])) + (", ..." if len(subfolders) > 3 else "")
    where = "subfolders of its split folders" if depth == 2 else "subfolders"
    return (f" Its images lie in {len(subfolders)} {where} ({listed}): if those are the classes, pass "
            f"`data` {shown(root / name)}.")


def _check_duplicates(root: Path, found: dict[str, list]) -> None:
    """Refuse a photo under two classes: one file (hard or symbolic link) or equal bytes.

    Only files whose size occurs in more than one class are read, to compare hashes. Equal bytes
    that are no image (an empty file, an error page saved as .jpg: a failed download's leavings) are
    not a photo under two classes: extraction skips and reports each.
    """
    files = sorted(((name, relpath, info) for name, images in found.items() for _, relpath, info in images),
                   key=lambda file: file[1])
    linked = _across_classes(files, lambda file: (file[2].st_dev, file[2].st_ino))
    if linked:
        raise _duplicate_error(root, linked, "are one file (a hard or symbolic link)")
    same_size = [file for group in _across_classes(files, lambda file: file[2].st_size) for file in group]
    copies = [group for group in _across_classes(same_size, lambda file: _content_hash(root / file[1]))
              if _decodes(root / group[0][1])]
    if copies:
        raise _duplicate_error(root, copies, "hold the same bytes")


def _twins(root: Path, found: dict[str, list]) -> dict[str, str]:
    """Relative path -> the first (sorted) path of its set, for each image with a same-bytes copy in
    its class. Only files whose size occurs twice in a class are read."""
    first_of = {}
    for images in found.values():
        by_size = {}
        for _, relpath, info in images:
            by_size.setdefault(info.st_size, []).append(relpath)
        by_content = {}
        for paths in (paths for paths in by_size.values() if len(paths) > 1):
            for relpath in paths:
                by_content.setdefault(_content_hash(root / relpath), []).append(relpath)
        for digest, paths in by_content.items():
            if digest is not None and len(paths) > 1 and _decodes(root / paths[0]):
                first_of.update(dict.fromkeys(paths, min(paths)))
    return first_of


def _twin_indices(sources: list[SourceFile], first_of: dict[str, str]) -> tuple[tuple[int, ...], ...]:
    """The source indices of each set of same-bytes files, sets in order of their first index."""
    sets = {}
    for index, source in enumerate(sources):
        if source.path in first_of:
            sets.setdefault(first_of[source.path], []).append(index)
    return tuple(sorted(tuple(indices) for indices in sets.values()))


def _twin_warnings(sources: list[SourceFile], twins: tuple[tuple[int, ...], ...]) -> list[str]:
    """What to say of same-bytes copies: how many, and how many straddle split folders."""
    if not twins:
        return []
    copies = sum(len(indices) - 1 for indices in twins)
    example = " = ".join(shown(sources[i].path) for i in twins[0][:2])
    lines = [f"{copies} photo(s) are same-bytes copies of another in their class (e.g. {example}); each "
             "set is kept on one side of the split and of every cross-validation fold."]
    straddling = [indices for indices in twins if len({sources[i].split for i in indices}) > 1]
    if straddling:
        lines.append(f"{len(straddling)} set(s) of copies lie in different split folders (e.g. "
                     f"{' and '.join(shown(sources[i].path) for i in straddling[0][:2])}): scores on the "
                     "split holding a copy of a training photo are optimistic. Delete the extra copies.")
    return lines


def _across_classes(files: list, key) -> list[list]:
    """Groups of ``files`` with one (non-None) ``key`` that span more than one class."""
    groups = {}
    for file in files:
        groups.setdefault(key(file), []).append(file)
    return [group for value, group in groups.items()
            if value is not None and len({file[0] for file in group}) > 1]


def _decodes(path: Path) -> bool:
    """Whether ``path`` decodes as an image, as extraction reads it (at a few pixels a side)."""
    try:
        load_pixels(path, 8)
    except Exception:  # extraction skips any undecodable file with its reason, as this does
        return False
    return True


def _content_hash(path: Path) -> bytes | None:
    """blake2b of a file's bytes, or None when it cannot be read (extraction reports it)."""
    digest = hashlib.blake2b()
    try:
        with open_regular(path) as file:
            while chunk := file.read(HASH_CHUNK):
                digest.update(chunk)
    except (OSError, ValueError):
        return None
    return digest.digest()


def _duplicate_error(root: Path, groups: list[list], what: str) -> FeatureError:
    first = groups[0][0]
    other = next(file for file in groups[0] if file[0] != first[0])
    more = f" (and {len(groups) - 1} more such photo(s))" if len(groups) > 1 else ""
    return FeatureError(
        f"{shown(first[1])} and {shown(other[1])} in {shown(root)} are under two classes "
        f"({shown(first[0])}, {shown(other[0])}) but {what}{more}. A photo belongs to one class: "
        "delete the wrong copy.")


def _check_splits(dataset: Dataset) -> None:
    train_labels = {s.label for s in dataset.sources if s.split == "train"}
    empty = [name for label, name in enumerate(dataset.class_names) if label not in train_labels]
    if empty:
        raise FeatureError(
            f"Class(es) with no training images in {shown(dataset.root)}: {', '.join(map(shown, empty))}. "
            "Add training images to them or remove the folders."
        )
    if not dataset.indices("validation"):
        raise FeatureError(
            f"No validation images in {shown(dataset.root)}. Add a validation/ folder or raise "
            "`val_fraction`."
        )
