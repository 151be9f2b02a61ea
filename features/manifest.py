"""A store's manifest: its layout, how a new one is made, how a read one is checked, and the
content key it hashes to (the store's folder name).

The key is computed from the same fields the manifest records, so a store's key can be
recomputed from its own manifest: an edited manifest (class order, settings, file list)
no longer hashes to its key.
"""

import hashlib
import json
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, get_type_hints

from features.errors import FeatureError

if TYPE_CHECKING:
    from features.dataset import Dataset
    from features.extract import ExtractConfig

MANIFEST = "manifest.json"
ARRAYS = ("features", "labels", "sources")  # the files of one shard, each with its sha256
# Bumped whenever the way features are computed changes, so old stores are not reused.
EXTRACTION_VERSION = 1
BACKBONE = "keras.applications.VGG16(include_top=False)"
PREPROCESSING = "pillow draft+exif upright+RGB+bilinear resize; vgg16.preprocess_input"
NOT_IN_KEY = ("max_bad",)  # settings that decide what is accepted, not what is computed


class _Optional(TypedDict, total=False):
    complete: bool  # every planned shard is written
    software: dict  # python and keras versions that wrote it
    int8: dict  # int8 stores: the calibrated model's identity, file hashes and provenance
    twins: list  # [[source index, ...]]: each set of same-bytes files in one class
    unlabelled: list  # paths of images outside any class folder, left out
    column_groups: dict  # `blocks` stores: group name -> [start, stop) of its feature columns


class Manifest(_Optional):
    """The layout of ``manifest.json`` (JSON types; the fields every reader relies on)."""

    key: str  # the content key: hashes config, weights identity, class names and sources
    config: dict  # ExtractConfig.to_dict(): the backbone spec's settings and the store's
    data_root: str  # absolute path of the data folder; sources are relative to it
    layout: str  # "flat" or "split"
    class_names: list  # class index -> folder name
    sources: list  # one dict per file: path, label, split, size, mtime_ns
    feature_shape: list
    dtype: str
    weights: dict  # identity, path, warning
    skipped: list  # {"path", "reason"} of files that could not be read
    shards: list  # {"name", "split", "pass", "rows", "sha256": {array: hex}} in plan order


# The required fields with their JSON types, checked on every read.
FIELDS = {name: kind for name, kind in get_type_hints(Manifest).items() if name in Manifest.__required_keys__}


def new_manifest(dataset: "Dataset", config: "ExtractConfig", key: str) -> Manifest:
    """Everything the manifest records before the first shard."""
    weights = config.weights
    groups = config.backbone.column_groups
    return {
        "key": key,
        "config": config.to_dict(),
        "data_root": str(dataset.root.resolve()),
        "layout": dataset.layout,
        "class_names": list(dataset.class_names),
        "sources": [asdict(source) for source in dataset.sources],
        "twins": [list(indices) for indices in dataset.twins],
        "feature_shape": list(config.backbone.feature_shape),
        "dtype": config.dtype,
        "weights": {"identity": weights.identity, "path": weights.path, "warning": weights.warning},
        "skipped": [{"path": path, "reason": reason} for path, reason in dataset.unreadable],
        "unlabelled": list(dataset.unlabelled),
        "software": {"python": platform.python_version(), "keras": metadata.version("keras")},
        "shards": [],
        "complete": False,
        **({"column_groups": groups} if groups else {}),
    }


# --- the content key ----------------------------------------------------------------------


def content_key(config: dict, weights_identity: str, class_names, sources: list[dict],
                int8_identity: str | None = None, column_groups: dict | None = None) -> str:
    """16 hex digits of sha256 over backbone, weights, settings (less ``NOT_IN_KEY``), class
    names and the file list with each file's split; for an int8 store also the identity
    (sha256) of its calibrated model, which shapes its features as much as the weights do; for a
    store with named column groups (``blocks`` pooling), those groups. Keys of other stores
    (``int8_identity`` and ``column_groups`` None) are what they always were."""
    identity = {
        "version": EXTRACTION_VERSION,
        "backbone": BACKBONE,
        "preprocessing": PREPROCESSING,
        "weights": weights_identity,
        "settings": {k: v for k, v in config.items()  # views=1 left out: keys as before views
                     if k not in NOT_IN_KEY and not (k == "views" and v == 1)},
        "class_names": list(class_names),
        "sources": sources,
    }
    if int8_identity is not None:
        identity["int8_model"] = int8_identity
    if column_groups is not None:
        identity["column_groups"] = column_groups
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def store_key(dataset: "Dataset", config: "ExtractConfig", int8_identity: str | None = None) -> str:
    """The key of the store these inputs make (for int8, with the calibrated model's identity)."""
    return content_key(config.to_dict(), config.weights.identity, dataset.class_names,
                       [asdict(source) for source in dataset.sources], int8_identity, config.backbone.column_groups)


def manifest_key(manifest: Manifest) -> str:
    """The key that a manifest's recorded config, weights, class names and sources hash to."""
    return content_key(manifest["config"], manifest["weights"]["identity"], manifest["class_names"],
                       manifest["sources"], manifest.get("int8", {}).get("identity"), manifest.get("column_groups"))


# --- reading ------------------------------------------------------------------------------


def read_manifest(folder: Path) -> Manifest:
    """The manifest of the store at ``folder``, refused in one line when it is missing, is not
    a JSON object, lacks a field, or no longer hashes to its key (see ``manifest_problem``)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FeatureError(f"No feature store at {folder} (no {MANIFEST}). "
                           "Run `python -m pipeline features` first.")
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:  # ValueError: not JSON, or not UTF-8
        problem = f"it cannot be read as JSON ({getattr(error, 'strerror', None) or error})"
    else:
        problem = manifest_problem(manifest)
    if problem:
        raise FeatureError(f"The manifest {path} of the store is damaged: {problem}. Run `features` "
                           "again with the same options to rebuild the store.")
    return manifest


def manifest_problem(manifest) -> str | None:
    """Why a parsed manifest cannot be trusted (None if it can): a field missing or of the
    wrong type, a malformed shard or skipped entry, or recorded settings, weights, class
    names or sources that no longer hash to its ``key``."""
    if not isinstance(manifest, dict):
        return "it is not a JSON object"
    for field, kind in FIELDS.items():
        if not isinstance(manifest.get(field), kind):
            return f"its {field!r} field is missing or not a JSON {kind.__name__}"
    if not all(_is_shard_entry(entry) for entry in manifest["shards"]):
        return "a shard entry lacks a field or names another split or pass than its file"
    if not all(isinstance(entry, dict) and "path" in entry for entry in manifest["skipped"]):
        return "a skipped entry has no path"
    if "column_groups" in manifest and not _are_column_groups(manifest["column_groups"], manifest["feature_shape"]):
        return "its column groups are not [start, stop) ranges of its feature columns"
    try:
        key = manifest_key(manifest)
    except (KeyError, TypeError) as error:
        return f"its weights or settings are malformed ({error!r})"
    if key != manifest["key"]:
        return (f"its settings, weights, class names or file list hash to {key}, not to its key "
                f"{manifest['key']} (it was edited, or written by another version)")
    return None


def _are_column_groups(groups, feature_shape: list) -> bool:
    """Each group an int range [start, stop) within the features' one axis."""
    return (isinstance(groups, dict) and len(feature_shape) == 1 and all(
        isinstance(r, list) and len(r) == 2 and all(isinstance(i, int) for i in r) and 0 <= r[0] < r[1] <= feature_shape[0]
        for r in groups.values()))


def _is_shard_entry(entry) -> bool:
    """A shard entry has every field, int rows and pass, and a name under its split and pass."""
    return (isinstance(entry, dict) and isinstance(entry.get("name"), str)
            and isinstance(entry.get("rows"), int) and isinstance(entry.get("pass"), int)
            and isinstance(entry.get("sha256"), dict) and all(a in entry["sha256"] for a in ARRAYS)
            and entry["name"].startswith(f"{entry.get('split')}/pass-{entry['pass']}/"))
