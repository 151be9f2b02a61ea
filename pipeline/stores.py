"""Stage-one orchestration: from a data folder and options to a finished store."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from shlex import quote

from features import Dataset, ExtractConfig, FeatureError, FeatureStore, StoreWriter, plan_shards, scan_dataset
from features.extract import check_unreadable, extract
from features.api import LATEST_FILE, store_path
from features.calibration import CalibratedModel, calibrated_model, install_int8_model
from features.dataset import first_names
from features.distributed import DaskExecutor, check_backend
from features.drift import DRIFT_THRESHOLD, Int8DriftError
from features.lock import store_lock
from features.manifest import new_manifest, read_manifest, store_key
from features.spec import DEFAULT_CALIBRATION_IMAGES
from features.store import atomic_write_bytes
from features.verify import verify_store
from features.weights import Weights, file_sha256, resolve_weights
from pipeline.config import command_forms
from pipeline.errors import PipelineError
from pipeline.progress import progress

logger = logging.getLogger(__name__)

WRITE_FIX = "Free disk space or choose a writable folder, then run the command again."


def build_store(dataset: Dataset, config: ExtractConfig, cache: Path, backend: str = "local",
                scheduler: str | None = None, recalibrate: bool = False) -> FeatureStore:
    """Extract what the store for these inputs lacks, and return it.

    The store folder is locked while it is written. Every recorded shard is checked first
    (``_drop_damaged_shards``); a complete store is then only held to ``--max-bad`` again
    (it is not in the key), and a resumed one is fully verified at the end.
    ``backend="dask"`` computes the shards on the Dask cluster at ``scheduler`` (None: a
    LocalCluster); the store is the same either way. An int8 store uses the calibrated model
    cached for its weights and image size (``features.calibration``; calibrated now when there
    is none, or on ``recalibrate``), whose identity is part of the key.
    """
    check_backend(backend, scheduler)
    check_unreadable(dataset.unreadable, dataset, config.max_bad)  # known from the scan: before any work
    if config.weights.warning:
        logger.warning("%s", config.weights.warning)
    config, int8 = _int8_or_fallback(cache, dataset, config, recalibrate)
    key = store_key(dataset, config, int8.identity if int8 else None)
    folder = cache / key
    with store_lock(folder):
        header = new_manifest(dataset, config, key)
        if int8:
            header["int8"] = int8.record()
        writer = StoreWriter.open(folder, header)
        if int8:
            if writer.manifest.get("int8") != header["int8"]:  # resumed: drift measured on another CPU since
                writer.manifest["int8"] = header["int8"]
                writer.save_manifest()
            install_int8_model(writer, int8)
        plan = plan_shards(dataset, config.passes, config.shard_size)
        _drop_damaged_shards(writer, plan)
        if writer.manifest["complete"]:
            extract(dataset, config, writer)  # computes nothing; applies max_bad again
            logger.info("Store %s is up to date: every shard checks out, nothing to recompute (%s).", key, folder)
            _mark_latest(cache, key)
            return FeatureStore(folder)
        _report_data_changes(cache, dataset, key)
        done = writer.done()
        todo_images = sum(len(s.sources) for s in plan if s.name not in done)
        if done:
            logger.info("Resuming store %s: %d of %d shards already written.", key, len(done), len(plan))
        executor = DaskExecutor(scheduler) if backend == "dask" else None
        with progress(todo_images, "features") as advance:
            result = extract(dataset, config, writer, on_images=advance, executor=executor)
        logger.info("Computed %d shard(s), reused %d.", result.shards_written, result.shards_reused)
        if done:
            _verify_or_fail(folder, writer.manifest)
            logger.info("Verified the resumed store: every shard's sha256, rows and labels check out.")
    _mark_latest(cache, key)
    return FeatureStore(folder)


def _int8_or_fallback(cache: Path, dataset: Dataset, config: ExtractConfig,
                      recalibrate: bool) -> tuple[ExtractConfig, CalibratedModel | None]:
    """The config to extract with and, for int8, its calibrated model, checked against fp32 on this
    CPU. A model that drifts stops an int8 that was asked for (``Int8DriftError``); under
    ``precision auto`` the config falls back to the fastest path short of int8, saying why."""
    spec = config.backbone
    if spec.precision != "int8":
        return config, None
    try:
        return config, calibrated_model(cache, dataset, spec, recalibrate)
    except Int8DriftError as error:
        if not spec.reason:
            raise
        drift = error.drift
        fallback = spec.without_int8(f"int8 drifts from fp32 on this CPU ({drift['cpu_class']}: min cosine "
                                     f"{drift['min_cosine']:.4f} < {DRIFT_THRESHOLD})")
        logger.warning("precision auto -> %s on the %s engine: %s", fallback.precision, fallback.engine,
                       fallback.reason)
        return replace(config, backbone=fallback), None


def _drop_damaged_shards(writer: StoreWriter, plan: list) -> None:
    """Forget the recorded shards that are missing, damaged or misrecorded, so that they are
    computed again, and say so in one line."""
    dropped = writer.drop_damaged({shard.name for shard in plan})
    if dropped:
        logger.info("Store %s: %d shard(s) missing, damaged or misrecorded (first: %s); recomputing them.",
                    writer.manifest["key"], len(dropped), dropped[0])


def _verify_or_fail(folder: Path, manifest: dict) -> None:
    problems = verify_store(folder, manifest)
    if problems:
        raise PipelineError(f"The store {folder} failed verification ({len(problems)} problem(s); "
                            f"first: {problems[0]}). Delete it and run `features` again.")


def _report_data_changes(cache: Path, dataset: Dataset, key: str) -> None:
    """Say how the data changed since the newest other sound store of the same folder."""
    root = str(dataset.root.resolve())
    previous = sorted((p for p in cache.glob("*/manifest.json") if p.parent.name != key),
                      key=lambda p: p.stat().st_mtime, reverse=True)
    for path in previous:
        try:
            manifest = read_manifest(path.parent)
        except FeatureError:  # a damaged store says nothing about the data
            continue
        if manifest["data_root"] == root:
            changes = source_changes(manifest["sources"], [asdict(s) for s in dataset.sources])
            if any(changes.values()):
                logger.info("The data in %s changed since store %s (%s): building a new store %s.",
                            root, manifest["key"], describe_changes(changes), key)
            return


def source_changes(before: list[dict], after: list[dict]) -> dict[str, list[str]]:
    """Paths added, removed and modified (size or mtime) between two source lists."""
    old = {s["path"]: (s["size"], s["mtime_ns"]) for s in before}
    new = {s["path"]: (s["size"], s["mtime_ns"]) for s in after}
    return {
        "added": sorted(new.keys() - old.keys()),
        "removed": sorted(old.keys() - new.keys()),
        "modified": sorted(p for p in old.keys() & new.keys() if old[p] != new[p]),
    }


def describe_changes(changes: dict[str, list[str]]) -> str:
    return ", ".join(f"{len(paths)} {kind}" for kind, paths in changes.items() if paths)


def stale_warning(store: FeatureStore) -> str | None:
    """A warning when the store's data folder no longer matches its manifest."""
    manifest = store.manifest
    root = Path(manifest["data_root"])
    if not root.is_dir():
        return f"the data folder {root} of store {store.key} is gone; its features still load."
    try:
        layout = "flat" if manifest["layout"] == "hashed" else "auto"  # split folders at the root or in each class
        current = scan_dataset(root, val_fraction=0.5, layout=layout)  # splits do not matter here
    except FeatureError as error:
        return f"store {store.key} is stale: {root} no longer reads as a dataset ({error})."
    changes = source_changes(manifest["sources"], [asdict(s) for s in current.sources])
    if any(changes.values()):
        make, cli = refresh_command(store)
        return (f"store {store.key} is stale: {root} changed since extraction "
                f"({describe_changes(changes)}). Refresh it with `{make}` (or `{cli}`).")
    return None


# The settings of `features` a refresh command names where the store's differ from the defaults:
# (manifest config key, make variable, CLI option).
REFRESH_SETTINGS = (("image_size", "IMAGE_SIZE", "--image-size"), ("pooling", "POOLING", "--pooling"),
                    ("passes", "PASSES", "--passes"), ("views", "VIEWS", "--views"),
                    ("shard_size", "SHARD_SIZE", "--shard-size"), ("max_bad", "MAX_BAD", "--max-bad"),
                    ("calibration_images", "CALIBRATION_IMAGES", "--calibration-images"))


def refresh_command(store: FeatureStore) -> tuple[str, str]:
    """The make and CLI commands that extract ``store``'s data folder again, into its cache, with
    its weights and the settings of ``REFRESH_SETTINGS`` that differ from the defaults; an int8
    store's name int8 (what ``auto`` picks depends on the CPU) and its calibration count where it
    is not int8's default. Run on an unchanged folder, they repair the store itself."""
    config, defaults = store.manifest["config"], ExtractConfig().to_dict()
    weights = store.manifest["weights"]["path"] or "none"  # no file: random weights
    settings = [("DATA", "--data", store.manifest["data_root"]), ("WEIGHTS", "--weights", weights)]
    if config.get("precision") == "int8":
        settings.append(("PRECISION", "--precision", "int8"))
        defaults["calibration_images"] = DEFAULT_CALIBRATION_IMAGES
    settings += [
        (variable, option, config[key]) for key, variable, option in REFRESH_SETTINGS
        if key in config and config[key] != defaults[key]]
    make = " ".join(["make features", *(f"{variable}={quote(str(value))}" for variable, _, value in settings)])
    cli = " ".join(["bottleneck-heads features", *(f"{option} {quote(str(value))}" for _, option, value in settings)])
    return command_forms(make, cli, cache=store.folder.parent)


def _mark_latest(cache: Path, key: str) -> None:
    """Record ``key`` as the last store `features` finished, atomically."""
    atomic_write_bytes(cache / LATEST_FILE, f"{key}\n".encode())


def store_folder(cache: Path, store: str) -> Path:
    """The folder of a store named by key, by folder path, or ``latest`` (the last `features` run)."""
    if store == "latest" and not (cache / LATEST_FILE).is_file():
        make, cli = command_forms("make features DATA=path/to/photos",
                                  "bottleneck-heads features --data path/to/photos", cache=cache)
        raise PipelineError(f"No feature store in {cache} yet. Make one from your photos with `{make}` (or `{cli}`).")
    return store_path(store, cache)


def open_store(cache: Path, store: str, require_complete: bool = True) -> FeatureStore:
    return FeatureStore(store_folder(cache, store), require_complete)


def describe_skipped(skipped: list[dict], limit: int = 10) -> list[str]:
    """Lines summarising unreadable files, the first ``limit`` by name."""
    if not skipped:
        return []
    lines = [f"Skipped {len(skipped)} unreadable file(s) (listed in the manifest):"]
    lines += [f"  {entry['path']}: {entry['reason']}" for entry in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return lines


def uneven_classes(store: FeatureStore) -> str | None:
    """A line naming the classes with under half the training photos of the largest, or None."""
    counts = Counter(source["label"] for source in store.manifest["sources"] if source["split"] == "train")
    sizes = [counts.get(label, 0) for label in range(len(store.class_names))]
    small = [name for name, size in zip(store.class_names, sizes) if 2 * size < max(sizes)]
    if not small:
        return None
    return (f"Uneven classes: {min(sizes)} to {max(sizes)} training photos a class; under half the largest: "
            f"{first_names(small, 5)}. Every head weighs each class alike and is tuned and chosen by balanced "
            "accuracy; more photos of those classes would still help most.")


def manifest_summary(store: FeatureStore) -> str:
    rows = {}
    for entry in store.manifest["shards"]:
        rows[entry["split"]] = rows.get(entry["split"], 0) + entry["rows"]
    counts = ", ".join(f"{split} {n}" for split, n in rows.items())
    config = store.manifest["config"]
    return (f"Store {store.key}: {counts} rows of shape {tuple(store.manifest['feature_shape'])} "
            f"{store.manifest['dtype']}, {len(store.class_names)} classes, computed in {config['precision']} "
            f"on {config['engine']} -> {store.folder}")


def write_json(path: Path, payload: dict, fix: str = WRITE_FIX) -> None:
    """Write ``payload`` as JSON atomically; a failure is one line ending with ``fix``."""
    atomic_write_bytes(path, (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode(), fix)


def recorded_weights(recorded: dict, override: str | None = None) -> Weights:
    """The weights features were extracted with; refuses any whose identity differs."""
    if recorded["identity"] == "random":
        return Weights(path=None, identity="random")
    weights = resolve_weights(override) if override else _find_recorded(recorded)
    if weights.identity != recorded["identity"]:
        raise PipelineError(f"--weights {override} are not the weights the features were extracted "
                            f"with ({recorded['identity']}). Pass those weights.")
    return weights


def _find_recorded(recorded: dict) -> Weights:
    path = recorded["path"]
    if path and Path(path).is_file() and (recorded["identity"] == "imagenet"
                                          or recorded["identity"] == f"sha256:{file_sha256(path)}"):
        return Weights(path=path, identity=recorded["identity"])
    if recorded["identity"] == "imagenet":
        return resolve_weights("imagenet")
    raise PipelineError(f"The recorded weights file {path} is gone or changed. Pass --weights with "
                        f"the file whose {recorded['identity']} matches.")
