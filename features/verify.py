"""Full integrity check of a store: its key, hashes, row counts, labels, splits and coverage."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from pathlib import Path

import numpy as np

from features.calibration import int8_problems, recorded_int8_sha256
from features.dataset import Dataset, SourceFile
from features.extract import plan_shards
from features.manifest import ARRAYS, MANIFEST, manifest_problem
from features.store import array_path, shard_problems


def dataset_from_manifest(manifest: dict) -> Dataset:
    """The dataset as it was when the store was extracted."""
    sources = tuple(SourceFile(**source) for source in manifest["sources"])
    return Dataset(Path(manifest["data_root"]), tuple(manifest["class_names"]), manifest["layout"], sources)


def verify_store(folder: Path, manifest: dict) -> list[str]:
    """Every problem found in the store at ``folder``; an empty list means it is sound.

    Checks each shard file's sha256 and row count, that every row's label is its source
    file's class and its source is in the shard's split, that the files on disk are the
    manifest's, that each split and pass holds every readable source exactly once, and
    that an int8 store's calibrated model is the one recorded. A manifest that is malformed
    or no longer hashes to its key is the only problem reported: nothing in it can be trusted.
    """
    problem = manifest_problem(manifest)
    if problem:
        return [f"{MANIFEST}: {problem}"]
    problems = []
    skipped = {entry["path"] for entry in manifest["skipped"]}
    seen: dict[tuple[str, int], Counter] = {}
    for entry in manifest["shards"]:
        arrays = {}
        for array_name in ARRAYS:
            path = array_path(folder, entry["name"], array_name)
            try:
                payload = path.read_bytes()
            except OSError as error:
                problems.append(f"{path}: {error.strerror}")
                continue
            if hashlib.sha256(payload).hexdigest() != entry["sha256"][array_name]:
                problems.append(f"{path}: sha256 differs from the manifest")
                continue
            arrays[array_name] = np.load(io.BytesIO(payload), allow_pickle=False)
        if len(arrays) < len(ARRAYS):
            continue
        if len(arrays["labels"]) != entry["rows"]:
            problems.append(f"{entry['name']}: {len(arrays['labels'])} rows, manifest says {entry['rows']}")
        problems += [f"{entry['name']}: {p}" for p in shard_problems(
            manifest, entry["split"], arrays["features"], arrays["labels"], arrays["sources"])]
        seen.setdefault((entry["split"], entry["pass"]), Counter()).update(arrays["sources"].tolist())

    problems += _coverage_problems(manifest, seen, skipped)
    problems += _file_list_problems(folder, manifest)
    problems += int8_problems(folder, recorded_int8_sha256(manifest))
    return problems


def _coverage_problems(manifest: dict, seen: dict, skipped: set[str]) -> list[str]:
    dataset = dataset_from_manifest(manifest)
    config = manifest["config"]
    planned = {s.name for s in plan_shards(dataset, config["passes"], config["shard_size"])}
    recorded = {entry["name"] for entry in manifest["shards"]}
    problems = [f"planned shard {name} is missing" for name in sorted(planned - recorded)]
    problems += [f"shard {name} is not in the plan" for name in sorted(recorded - planned)]
    for split in dataset.splits():
        expected = {i for i in dataset.indices(split) if dataset.sources[i].path not in skipped}
        for pass_index in range(config["passes"] + 1 if split == "train" else 1):
            counts = seen.get((split, pass_index), Counter())
            if set(counts) != expected or any(n != 1 for n in counts.values()):
                problems.append(f"{split} pass {pass_index}: does not hold each readable source once")
    return problems


def _file_list_problems(folder: Path, manifest: dict) -> list[str]:
    listed = {array_path(folder, e["name"], a) for e in manifest["shards"] for a in ARRAYS}
    on_disk = {p for p in folder.rglob("*.npy") if not p.name.startswith(".")}
    return [f"{p}: on disk but not in {MANIFEST}" for p in sorted(on_disk - listed)]
