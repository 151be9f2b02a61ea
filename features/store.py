"""The feature store: ``.npy`` shards plus a ``manifest.json`` that ties rows to files.

Layout of one store (one folder per content key)::

    <key>/manifest.json
    <key>/<split>/pass-<k>/shard-<nnnnn>.npy          features, (rows, *feature_shape)
    <key>/<split>/pass-<k>/shard-<nnnnn>.labels.npy   int32 class index, (rows,)
    <key>/<split>/pass-<k>/shard-<nnnnn>.sources.npy  int64 index into manifest["sources"], (rows,)

Every file is written under a temporary name and renamed into place, and the
manifest is rewritten the same way after each shard, so a killed run leaves only
whole shards behind. Reading trusts nothing: the manifest must hash to its key, and each
shard file must have its recorded sha256 and line up with the manifest's sources.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.weights import file_sha256
from features.errors import FeatureError
from features.manifest import ARRAYS, MANIFEST, read_manifest

STORE_FIX = "Free disk space or pass `cache` with a writable folder, then rerun the same command to resume."
RECOMPUTE = "Run `features` again with the same options to recompute it."


def array_path(store: Path, name: str, array: str) -> Path:
    suffix = ".npy" if array == "features" else f".{array}.npy"
    return store / f"{name}{suffix}"


def make_store_folder(folder: Path) -> None:
    """Create ``folder`` (and parents), or say in one line why it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FeatureError(f"Cannot create the store folder {folder}: {error.strerror}. "
                           "Pass `cache` with a writable folder.") from None


TEMPORARY_MARK = ".tmp-"


def remove_leftovers(folder: Path) -> None:
    """Delete the temporary files and folders that killed writers left in a store."""
    for leftover in list(Path(folder).rglob(f".*{TEMPORARY_MARK}*")):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, payload: bytes, fix: str = STORE_FIX) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one.

    On failure (disk full, no permission) the temporary file is removed and a
    ``FeatureError`` names the cause, then ``fix`` (what to do about it); ``path`` is left
    as it was.
    """
    temporary = path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise FeatureError(f"Could not write {path}: {error.strerror or error}. {fix}") from None


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@dataclass(frozen=True)
class Shard:
    """One planned unit of work: a fixed list of sources in one split and pass."""

    split: str
    pass_index: int
    number: int
    sources: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.split}/pass-{self.pass_index}/shard-{self.number:05d}"


class StoreWriter:
    """Creates or resumes a store folder and records each finished shard."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder = Path(folder)
        self.manifest = manifest

    @classmethod
    def open(cls, folder: Path, header: dict) -> "StoreWriter":
        """Resume the store in ``folder`` if its manifest is sound and has ``header``'s key;
        else start it over, deleting the shard files of a damaged or foreign manifest."""
        folder = Path(folder)
        make_store_folder(folder)
        remove_leftovers(folder)
        try:
            manifest = read_manifest(folder)
        except FeatureError:  # absent, unparseable, or edited: nothing in it can be trusted
            manifest = {}
        if manifest.get("key") == header["key"]:
            return cls(folder, manifest)
        for stale in folder.rglob("shard-*.npy"):
            stale.unlink()
        writer = cls(folder, {"skipped": [], **header, "shards": [], "complete": False})
        writer.save_manifest()
        return writer

    def drop_damaged(self, planned: set[str]) -> list[str]:
        """Forget every recorded shard that is damaged (see ``check_shard``), listed twice or not
        ``planned``, deleting a damaged one's files, so that extraction computes it again.

        The store is marked incomplete when a planned shard is then unrecorded. Returns the
        names of the shards forgotten.
        """
        kept, dropped = {}, []
        for entry in self.manifest["shards"]:
            name = entry["name"]
            if name in planned and name not in kept:
                try:
                    check_shard(self.folder, self.manifest, entry, set())
                    kept[name] = entry
                    continue
                except FeatureError:
                    for array_name in ARRAYS:
                        array_path(self.folder, name, array_name).unlink(missing_ok=True)
            dropped.append(name)
        missing = planned - kept.keys()
        if dropped or (missing and self.manifest["complete"]):
            self.manifest["shards"] = list(kept.values())
            self.manifest["complete"] = self.manifest["complete"] and not missing
            self.save_manifest()
        return dropped

    def done(self) -> set[str]:
        return {entry["name"] for entry in self.manifest["shards"]}

    def write_shard(self, shard: Shard, features: np.ndarray, labels: np.ndarray,
                    sources: np.ndarray, skipped: dict[str, str]) -> None:
        """Write the shard's three arrays, then record them (and new skips) in the manifest."""
        self.record_shard(write_shard_files(self.folder, self.manifest, shard, features, labels, sources), skipped)

    def record_shard(self, entry: dict, skipped: dict[str, str], save: bool = True) -> None:
        """Add a shard whose files are written (``write_shard_files``' entry) to the manifest.

        ``save=False`` leaves the manifest file for a later ``save_manifest``, so that many
        shards finished together cost one rewrite.
        """
        self.manifest["shards"].append(entry)
        known = {item["path"] for item in self.manifest["skipped"]}
        self.manifest["skipped"] += [
            {"path": path, "reason": reason} for path, reason in sorted(skipped.items())
            if path not in known
        ]
        if save:
            self.save_manifest()

    def finish(self) -> None:
        self.manifest["complete"] = True
        self.save_manifest()

    def save_manifest(self) -> None:
        payload = json.dumps(self.manifest, indent=1, sort_keys=True).encode()
        atomic_write_bytes(self.folder / MANIFEST, payload)


def write_shard_files(folder: Path, manifest: dict, shard: Shard, features: np.ndarray,
                      labels: np.ndarray, sources: np.ndarray) -> dict:
    """Write one shard's arrays atomically; return its manifest entry (rows and sha256s).

    Refuses rows that do not line up with the manifest's sources (see ``shard_problems``).
    """
    problems = shard_problems(manifest, shard.split, features, labels, sources)
    if problems:
        raise FeatureError(f"Refusing to write misaligned shard {shard.name}: {problems[0]}")
    hashes = {}
    for array_name, array in zip(ARRAYS, (features, labels, sources)):
        payload = _npy_bytes(array)
        hashes[array_name] = hashlib.sha256(payload).hexdigest()
        atomic_write_bytes(array_path(Path(folder), shard.name, array_name), payload)
    return {"name": shard.name, "split": shard.split, "pass": shard.pass_index,
            "rows": int(len(labels)), "sha256": hashes}


def shard_problems(manifest: dict, split: str, features, labels, sources) -> list[str]:
    """What is wrong with one shard's rows: counts, shapes, labels, splits, duplicates."""
    table = manifest["sources"]
    problems = []
    if not len(features) == len(labels) == len(sources):
        problems.append(f"{len(features)} feature rows, {len(labels)} labels, {len(sources)} sources")
    elif tuple(features.shape[1:]) != tuple(manifest["feature_shape"]):
        problems.append(f"features of shape {features.shape[1:]}, expected {manifest['feature_shape']}")
    elif len(sources) and (sources.min() < 0 or sources.max() >= len(table)):
        problems.append("source index out of range")
    elif len(set(sources.tolist())) != len(sources):
        problems.append("a source appears twice")
    else:
        expected = np.asarray([table[i]["label"] for i in sources], dtype=np.int64)
        if not np.array_equal(expected, np.asarray(labels, dtype=np.int64)):
            problems.append("a label differs from its source file's class")
        if any(table[i]["split"] != split for i in sources):
            problems.append(f"a source from another split is in '{split}'")
    return problems


def check_shard(folder: Path, manifest: dict, entry: dict, whole: set[Path]) -> dict[str, np.ndarray]:
    """One recorded shard's arrays, memory-mapped, once they check out against the manifest.

    Each file must have its recorded sha256 (hashed unless its path is in ``whole``, which
    collects the paths found whole) and row count, and the rows must line up with the
    manifest's sources (``shard_problems``). Otherwise a ``FeatureError`` names the file.
    """
    arrays = {}
    for array_name in ARRAYS:
        path = array_path(Path(folder), entry["name"], array_name)
        if path not in whole:
            _check_sha256(path, entry["sha256"][array_name])
            whole.add(path)
        try:
            arrays[array_name] = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise FeatureError(f"Shard file {path} is missing or damaged ({error}). {RECOMPUTE}") from None
        if arrays[array_name].ndim == 0 or len(arrays[array_name]) != entry["rows"]:
            raise FeatureError(f"Shard file {path} does not hold the {entry['rows']} rows its manifest "
                               f"records. {RECOMPUTE}")
    problems = shard_problems(manifest, entry["split"], arrays["features"], arrays["labels"], arrays["sources"])
    if problems:
        raise FeatureError(f"Shard {Path(folder) / entry['name']} does not line up with the manifest: "
                           f"{problems[0]}. {RECOMPUTE}")
    return arrays


def _check_sha256(path: Path, expected: str) -> None:
    """Refuse a shard file that cannot be read or whose sha256 is not ``expected``."""
    try:
        actual = file_sha256(path)
    except OSError as error:
        raise FeatureError(f"Shard file {path} is missing or damaged ({error.strerror or error}). "
                           f"{RECOMPUTE}") from None
    if actual != expected:
        raise FeatureError(f"Shard file {path} is damaged or replaced: its sha256 differs from the "
                           f"manifest's. {RECOMPUTE}")


class FeatureStore:
    """Reads a finished store; arrays are memory-mapped shard by shard.

    Opening checks the manifest (``read_manifest``); every shard load checks the shard's
    files against it (``check_shard``), hashing each file once per instance; a split's rows
    must hold each of its readable sources once per pass. `verify` checks the whole store.
    """

    def __init__(self, folder: Path | str, require_complete: bool = True):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self._whole: set[Path] = set()  # shard files whose sha256 checked out
        if require_complete and not self.manifest.get("complete"):
            raise FeatureError(f"The store {self.folder} is incomplete: its extraction did not "
                               "finish. Rerun the same `features` command to resume it.")

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def class_names(self) -> list[str]:
        return self.manifest["class_names"]

    @property
    def column_groups(self) -> dict[str, list[int]] | None:
        """Named groups of feature columns, name -> [start, stop) (``blocks`` pooling); None: the
        columns are one group (every other pooling, and stores older than column groups)."""
        return self.manifest.get("column_groups")

    @property
    def splits(self) -> list[str]:
        present = {entry["split"] for entry in self.manifest["shards"]}
        return [split for split in ("train", "validation", "test") if split in present]

    def source_groups(self, sources: np.ndarray) -> np.ndarray:
        """The group of each source index in ``sources``: same-bytes copies in one class share the
        smallest index of their set (grouped folds keep them together); any other file is its own."""
        group = np.arange(len(self.manifest["sources"]))
        for indices in self.manifest.get("twins", []):
            members = [i for i in indices if isinstance(i, int) and 0 <= i < len(group)]
            group[members] = min(members, default=0)
        return group[np.asarray(sources, dtype=np.int64)]

    def source_paths(self, sources: np.ndarray) -> list[str]:
        table = self.manifest["sources"]
        return [table[int(i)]["path"] for i in sources]

    def load_shard(self, entry: dict) -> dict[str, np.ndarray]:
        """One shard's arrays, memory-mapped, after ``check_shard``."""
        return check_shard(self.folder, self.manifest, entry, self._whole)

    def split_arrays(self, split: str, passes: bool = True) -> dict[str, np.ndarray]:
        """All rows of ``split`` (every pass unless ``passes`` is False), loaded into memory.

        Returns ``features`` (float32), ``labels``, ``sources`` and ``passes`` arrays.
        """
        rows = self.split_rows(split, passes)
        return {**rows, "features": np.asarray(rows["features"])}

    def split_rows(self, split: str, passes: bool = True) -> dict:
        """Like ``split_arrays``, but ``features`` stay in their memory-mapped shard files
        (a ``ShardedFeatures``); labels, sources and passes are small and loaded."""
        wanted = range(self.manifest["config"]["passes"] + 1 if passes and split == "train" else 1)
        entries = [e for e in self.manifest["shards"] if e["split"] == split and e["pass"] in wanted]
        if not entries:
            raise FeatureError(f"The store {self.folder} has no '{split}' rows; its splits are "
                               f"{', '.join(self.splits)}.")
        parts = [self.load_shard(entry) for entry in entries]
        rows = {
            "features": ShardedFeatures([p["features"] for p in parts]),
            "labels": np.concatenate([p["labels"] for p in parts]).astype(np.int64),
            "sources": np.concatenate([p["sources"] for p in parts]).astype(np.int64),
            "passes": np.concatenate([np.full(e["rows"], e["pass"]) for e in entries]),
        }
        self._check_coverage(split, wanted, rows["sources"], rows["passes"])
        return rows

    def _check_coverage(self, split: str, wanted: range, sources: np.ndarray, passes: np.ndarray) -> None:
        """Refuse rows that do not hold each readable source of ``split`` once in every pass."""
        skipped = {entry["path"] for entry in self.manifest["skipped"]}
        expected = [i for i, source in enumerate(self.manifest["sources"])
                    if source["split"] == split and source["path"] not in skipped]
        for pass_index in wanted:
            if not np.array_equal(np.sort(sources[passes == pass_index]), expected):
                raise FeatureError(f"The store {self.folder} does not hold each readable '{split}' "
                                   f"image once in pass {pass_index}: its manifest lists a shard twice "
                                   "or lacks one. Run `features` again with the same options to repair it.")


class ShardedFeatures:
    """Feature rows spread over memory-mapped shard arrays, read only where asked.

    ``features[rows]`` gathers rows by an array of global indices; ``blocks()`` yields one
    shard at a time; ``np.asarray`` loads everything as float32. ``shape``, ``ndim``, ``dtype``
    (float32, what reads return), ``size`` and ``nbytes`` describe the array it stands for.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(part) for part in parts])
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __repr__(self) -> str:
        return (f"ShardedFeatures(shape={self.shape}, dtype={self.dtype}, "
                f"{len(self.parts)} memory-mapped shard{'s' if len(self.parts) != 1 else ''})")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.concatenate(self.parts).astype(dtype or np.float32)

    def blocks(self):
        for part in self.parts:
            yield np.asarray(part, dtype=np.float32)

    def __getitem__(self, key) -> np.ndarray:
        """Rows as one float32 array: ``key`` is an array of global row indices (any order),
        a boolean mask, a slice or an int, optionally followed by indices of the feature
        axes (``X[rows, ...]``, as scikit-learn's indexing asks)."""
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(rows, (int, np.integer)):
            return self[(np.array([rows]), *rest)][0]
        if isinstance(rows, slice):
            rows = np.arange(len(self))[rows]
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        gathered = self._gather(rows)
        return gathered[(slice(None), *rest)] if rest else gathered

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), np.float32)
        part_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for part in np.unique(part_of):
            where = np.flatnonzero(part_of == part)
            local = rows[where] - self.offsets[part]
            order = np.argsort(local)  # ascending reads are kind to the page cache
            out[where[order]] = self.parts[part][local[order]]
        return out
