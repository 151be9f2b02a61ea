"""Stage-one orchestration: from a data folder and options to a finished store."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path

import keras

from features import (Dataset, ExtractConfig, FeatureError, FeatureStore, StoreWriter, Weights,
                      extract, plan_shards, resolve_weights)
from features.backbone import feature_shape
from pipeline.config import LATEST_FILE
from pipeline.keys import store_key
from pipeline.progress import progress


def store_header(dataset: Dataset, config: ExtractConfig, weights: Weights, key: str) -> dict:
    """Everything the manifest records before the first shard."""
    return {
        "key": key,
        "config": config.to_dict(),
        "data_root": str(dataset.root.resolve()),
        "layout": dataset.layout,
        "class_names": list(dataset.class_names),
        "sources": [asdict(source) for source in dataset.sources],
        "feature_shape": list(feature_shape(config.image_size, config.pooling)),
        "dtype": config.dtype,
        "weights": {"identity": weights.identity, "path": weights.path, "warning": weights.warning},
        "software": {"python": platform.python_version(), "keras": keras.__version__},
    }


def build_store(dataset: Dataset, config: ExtractConfig, weights_spec: str, cache: Path,
                log=print) -> tuple[FeatureStore, int]:
    """Extract what the store for these inputs lacks; return it and the shards computed."""
    weights = resolve_weights(weights_spec)
    if weights.warning:
        log(f"warning: {weights.warning}")
    key = store_key(dataset, config, weights)
    writer = StoreWriter.open(cache / key, store_header(dataset, config, weights, key))
    if writer.manifest["complete"]:
        log(f"Store {key} is up to date: nothing to recompute ({cache / key}).")
        _mark_latest(cache, key)
        return FeatureStore(cache / key), 0
    plan = plan_shards(dataset, config.passes, config.shard_size)
    done = writer.done()
    todo_images = sum(len(s.sources) for s in plan if s.name not in done)
    if done:
        log(f"Resuming store {key}: {len(done)} of {len(plan)} shards already written.")
    with progress(todo_images, "features") as advance:
        result = extract(dataset, config, weights, writer, on_images=advance)
    _mark_latest(cache, key)
    return FeatureStore(cache / key), result.shards_written


def _mark_latest(cache: Path, key: str) -> None:
    (cache / LATEST_FILE).write_text(key + "\n")


def open_store(cache: Path, store: str) -> FeatureStore:
    """A store named by key, by folder path, or ``latest`` (the last `features` run)."""
    if store == "latest":
        latest = cache / LATEST_FILE
        if not latest.is_file():
            raise FeatureError(f"No feature store in {cache} yet. Run `python -m pipeline features` "
                               "(or `make features`) first.")
        store = latest.read_text().strip()
    folder = Path(store) if Path(store).is_dir() else cache / store
    return FeatureStore(folder)


def describe_skipped(skipped: list[dict], limit: int = 10) -> list[str]:
    """Lines summarising unreadable files, the first ``limit`` by name."""
    if not skipped:
        return []
    lines = [f"Skipped {len(skipped)} unreadable file(s) (listed in the manifest):"]
    lines += [f"  {entry['path']}: {entry['reason']}" for entry in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return lines


def manifest_summary(store: FeatureStore) -> str:
    rows = {}
    for entry in store.manifest["shards"]:
        rows[entry["split"]] = rows.get(entry["split"], 0) + entry["rows"]
    counts = ", ".join(f"{split} {n}" for split, n in rows.items())
    return (f"Store {store.key}: {counts} rows of shape {tuple(store.manifest['feature_shape'])} "
            f"{store.manifest['dtype']}, {len(store.class_names)} classes -> {store.folder}")


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
