"""The feature store: ``.npy`` shards plus a ``manifest.json`` that ties rows to files.

Layout of one store (one folder per content key)::

    <key>/manifest.json
    <key>/<split>/pass-<k>/shard-<nnnnn>.npy          features, (rows, *feature_shape)
    <key>/<split>/pass-<k>/shard-<nnnnn>.labels.npy   int32 class index, (rows,)
    <key>/<split>/pass-<k>/shard-<nnnnn>.sources.npy  int64 index into manifest["sources"], (rows,)

Every file is written under a temporary name and renamed into place, and the
manifest is rewritten the same way after each shard, so a killed run leaves only
whole shards behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.errors import FeatureError

MANIFEST = "manifest.json"
ARRAYS = ("features", "labels", "sources")


def array_path(store: Path, name: str, array: str) -> Path:
    suffix = ".npy" if array == "features" else f".{array}.npy"
    return store / f"{name}{suffix}"


def make_store_folder(folder: Path) -> None:
    """Create ``folder`` (and parents), or say in one line why it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FeatureError(f"Cannot create the store folder {folder}: {error.strerror}. "
                           "Pass --cache with a writable folder.") from None


TEMPORARY_MARK = ".tmp-"
# Fault injection for the crash tests: seconds to pause halfway through writing each
# temporary file, so a test can SIGKILL the process while a truncated file exists.
WRITE_PAUSE_ENV = "BOTTLENECK_TEST_WRITE_PAUSE"


def remove_leftovers(folder: Path) -> None:
    """Delete the temporary files and folders that killed writers left in a store."""
    for leftover in list(Path(folder).rglob(f".*{TEMPORARY_MARK}*")):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one.

    On failure (disk full, no permission) the temporary file is removed and a
    ``FeatureError`` names the cause; ``path`` is left as it was.
    """
    temporary = path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            half = len(payload) // 2
            handle.write(payload[:half])
            if os.environ.get(WRITE_PAUSE_ENV):
                handle.flush()
                time.sleep(float(os.environ[WRITE_PAUSE_ENV]))
            handle.write(payload[half:])
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise FeatureError(
            f"Could not write {path}: {error.strerror or error}. Free disk space or pass --cache "
            "with a writable folder, then rerun the same command to resume."
        ) from None


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
        """Resume the store in ``folder`` if its manifest matches ``header``, else start it."""
        folder = Path(folder)
        make_store_folder(folder)
        remove_leftovers(folder)
        existing = folder / MANIFEST
        if existing.exists():
            manifest = json.loads(existing.read_text())
            if manifest.get("key") == header["key"]:
                return cls(folder, manifest)
        writer = cls(folder, {"skipped": [], **header, "shards": [], "complete": False})
        writer.save_manifest()
        return writer

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


class FeatureStore:
    """Reads a finished store; arrays are memory-mapped shard by shard.

    Every shard load checks its row counts against the manifest (cheap); `verify`
    checks hashes and alignment in full.
    """

    def __init__(self, folder: Path | str, require_complete: bool = True):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise FeatureError(f"No feature store at {self.folder} (no {MANIFEST}). "
                               "Run `python -m pipeline features` first.")
        self.manifest = json.loads(path.read_text())
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
    def splits(self) -> list[str]:
        present = {entry["split"] for entry in self.manifest["shards"]}
        return [split for split in ("train", "validation", "test") if split in present]

    def source_paths(self, sources: np.ndarray) -> list[str]:
        table = self.manifest["sources"]
        return [table[int(i)]["path"] for i in sources]

    def load_shard(self, entry: dict) -> dict[str, np.ndarray]:
        """One shard's arrays, memory-mapped, after a cheap row-count check."""
        arrays = {}
        for array_name in ARRAYS:
            path = array_path(self.folder, entry["name"], array_name)
            try:
                arrays[array_name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise FeatureError(f"Shard file {path} is missing or damaged ({error}). "
                                   "Delete the store folder and run `features` again.") from None
            if len(arrays[array_name]) != entry["rows"]:
                raise FeatureError(f"Shard file {path} has {len(arrays[array_name])} rows, the "
                                   f"manifest says {entry['rows']}. Delete the store folder and "
                                   "run `features` again.")
        return arrays

    def split_arrays(self, split: str, passes: bool = True) -> dict[str, np.ndarray]:
        """All rows of ``split`` (every pass unless ``passes`` is False), loaded into memory.

        Returns ``features`` (float32), ``labels``, ``sources`` and ``passes`` arrays.
        """
        rows = self.split_rows(split, passes)
        return {**rows, "features": np.asarray(rows["features"])}

    def split_rows(self, split: str, passes: bool = True) -> dict:
        """Like ``split_arrays``, but ``features`` stay in their memory-mapped shard files
        (a ``ShardedFeatures``); labels, sources and passes are small and loaded."""
        entries = [e for e in self.manifest["shards"]
                   if e["split"] == split and (passes or e["pass"] == 0)]
        if not entries:
            raise FeatureError(f"The store {self.folder} has no '{split}' rows.")
        parts = [self.load_shard(entry) for entry in entries]
        return {
            "features": ShardedFeatures([p["features"] for p in parts]),
            "labels": np.concatenate([p["labels"] for p in parts]).astype(np.int64),
            "sources": np.concatenate([p["sources"] for p in parts]).astype(np.int64),
            "passes": np.concatenate([np.full(e["rows"], e["pass"]) for e in entries]),
        }


class ShardedFeatures:
    """Feature rows spread over memory-mapped shard arrays, read only where asked.

    ``features[rows]`` gathers rows by an array of global indices; ``blocks()`` yields one
    shard at a time; ``np.asarray`` loads everything as float32.
    """

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(part) for part in parts])
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.concatenate(self.parts).astype(dtype or np.float32)

    def blocks(self):
        for part in self.parts:
            yield np.asarray(part, dtype=np.float32)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (global indices, any order) as one float32 array."""
        rows = np.asarray(rows)
        out = np.empty((len(rows), *self.shape[1:]), np.float32)
        part_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for part in np.unique(part_of):
            where = np.flatnonzero(part_of == part)
            local = rows[where] - self.offsets[part]
            order = np.argsort(local)  # ascending reads are kind to the page cache
            out[where[order]] = self.parts[part][local[order]]
        return out
