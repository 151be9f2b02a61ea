"""Stage-two orchestration: fit a head on a store, save it with its metrics, load it back.

A run folder is ``runs/<store key>/<head>/`` holding ``model/`` (the head's files),
``run.json`` (head, params, store key, fit seconds, sha256 of every model file) and
``metrics.json`` (validation metrics). With ``final_fit`` "train+validation" (what "auto" means
for every head but finetune) the head is tuned and scored as always, then refitted with its choices
on the validation rows too (``fit_like``), and that refit is what ``model/`` holds; ``run.json``
says so. A run is written whole into a temporary sibling, then
swapped in (``replace_folder``), under a kernel lock on the run: a fit killed or out of disk at
any instant leaves the previous run as it was, and two fits of one run never interleave.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features import FeatureStore
from features.weights import file_sha256
from features.lock import FolderLock, lock_path
from features.store import TEMPORARY_MARK, ShardedFeatures, atomic_write_bytes
from features.spec import BILINEAR_GROUP, Pooling
from heads import HEADS, MAPS_HEADS, Head, create_head, head_class
from pipeline.config import command_forms
from pipeline.errors import PipelineError
from pipeline.metrics import classification_metrics, expand_proba
from pipeline.replace import replace_folder
from pipeline.stores import recorded_weights, write_json

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "validation_predictions.npz"
MODEL_DIR = "model"
RUN_FIELDS = {"head": str, "store_key": str, "model_sha256": dict}  # what loading a run relies on
RUNS_FIX = "Free disk space or pass --runs with a writable folder, then fit the head again."
# The column groups a head uses on a store that has them (the default `blocks` pooling). logreg and
# the SVM choose by their grouped search on the training rows between block 5's average and max
# (what VGG16 has folded into ImageNet's objects) and block 4's beside them (texture and parts); in
# the paired cross-validation of bench/results/accuracy-2026-12-04-blocks.md the search chose block 4
# on dtd_6's textures (+0.9 points) and block 5 on every monkeys_10 fold, and on validation it raised
# dtd_6's logreg from 0.875 to 0.900, the others within 0.3 points. Without a search, and for the
# dense head (block 4 beside block 5 cost it on dtd_6), block 5. On a `bilinear` store they may also
# take block 5's compact bilinear group beside blocks 4 and 5 (bench/second_order.py: +1.9 points on
# dtd_6, +0.5 on monkeys_10, -0.1 on cats_and_dogs_filtered in paired CV).
BLOCK5 = "block5_avg+block5_max"
COLUMN_CHOICES = (BLOCK5, "block4_avg+block4_max+" + BLOCK5)
BILINEAR_CHOICE = f"{COLUMN_CHOICES[1]}+{BILINEAR_GROUP}"
GROUP_SEARCH_HEADS = ("logreg", "svm")
# Which rows the saved head is fitted on: the training rows it was tuned and scored with, or those
# and the validation rows (each head's `fit_like`: its searched choices kept, nothing searched again);
# "auto": the second wherever the head can refit. In the paired cross-validation of
# bench/final_fit.py (each fold's photos split four fifths training, one fifth validation, as a
# user's folder is) the refit raised the held-out accuracy of every head by 0.8-3.1 points on
# dtd_6, 0.1-1.0 on monkeys_10 and 0.8-1.2 on cats_and_dogs_filtered at 20 photos a class, and left
# it level (-0.1 to +0.0) on cats_and_dogs_filtered's 2,400 photos.
FINAL_FITS = ("auto", "train", "train+validation")


@dataclass
class Run:
    """A fitted run: ``head`` is the model saved in ``folder`` (what predict and export use);
    ``tuned`` the head as fitted on the training rows and scored on validation, the same object
    unless the run was refitted on validation too."""
    folder: Path
    head: Head
    info: dict
    metrics: dict
    tuned: Head | None = None

    def __post_init__(self):
        self.tuned = self.tuned or self.head


def run_folder(runs: Path, store: FeatureStore, head_name: str) -> Path:
    return runs / store.key / head_name


def head_for_store(store: FeatureStore, head_name: str, params: dict, search: bool = True) -> Head:
    """``head_name`` unfitted, as `head` and `compare` create it for ``store``: ``params`` checked
    against the store's features, its column groups, and (with ``search``) the space it searches:
    its ``default_search_space`` less any parameter given in ``params``, and the groups."""
    params = given = store_params(store, head_name, params)
    if store.column_groups:
        params = group_params(head_name, store.column_groups, params, search)
    space = head_class(head_name).search_space_without(params)
    if search and store.column_groups and head_name != "ensemble":
        space = {**space, **group_space(head_name, given, store.column_groups)}
    if search and space:  # a parameter given explicitly is not searched
        params = {"search_space": space, **params}
    return create_head(head_name, **params)


def fit_run(store: FeatureStore, head_name: str, params: dict, runs: Path, search: bool = True,
            members: dict[str, Run] | None = None, final_fit: str = "auto") -> Run:
    """Fit ``head_name`` on the store's training rows (every pass), score it on validation; then,
    as ``final_fit`` asks (``FINAL_FITS``), refit it on the validation rows too.

    With ``search``, a head first tunes itself on the training rows over its
    ``default_search_space``, less any parameter given in ``params``. ``members``:
    runs of the ensemble's members already fitted on this store with the same settings, reused
    by the ensemble rather than fitted again (their refits too); their fit seconds are added to its own.
    """
    final_fit = resolved_final_fit(head_name, final_fit)
    head = head_for_store(store, head_name, params, search)
    folder = run_folder(runs, store, head_name)
    with run_lock(folder):  # before the fit: a busy or unwritable --runs is found first
        return _fit_and_write(store, head_name, head, folder, members, final_fit)


def resolved_final_fit(head_name: str, final_fit: str) -> str:
    """``final_fit`` for ``head_name``: "auto" is "train+validation" where the head can refit
    (``fit_like``), else "train"; a value not in ``FINAL_FITS``, or a refit the head cannot make,
    is refused."""
    if final_fit not in FINAL_FITS:
        raise PipelineError(f"--final-fit must be one of {', '.join(FINAL_FITS)}. Received: {final_fit!r}")
    refits = hasattr(head_class(head_name), "fit_like")
    if final_fit == "auto":
        return "train+validation" if refits else "train"
    if final_fit == "train+validation" and not refits:
        able = ", ".join(name for name in HEADS if hasattr(head_class(name), "fit_like"))
        raise PipelineError(f"The {head_name} head cannot be refitted on the validation rows (--final-fit "
                            f"{final_fit}); {able} can. Fit it with --final-fit train or auto.")
    return final_fit


def _fit_and_write(store: FeatureStore, head_name: str, head: Head, folder: Path,
                   members: dict[str, Run] | None, final_fit: str) -> Run:
    """Fit and score ``head``, refit it as ``final_fit`` asks, write its run into a temporary
    sibling of ``folder``, swap it in."""
    train = store.split_rows("train")  # the dense head streams it; sklearn heads load it
    validation = store.split_arrays("validation", passes=False)

    groups = store.source_groups(train["sources"])  # an image's passes and its same-bytes copies together
    started = time.perf_counter()
    if members:
        head.fit(train["features"], train["labels"], groups=groups,
                 fitted={name: run.tuned for name, run in members.items()})
    else:
        head.fit(train["features"], train["labels"], groups=groups)
    fit_seconds = time.perf_counter() - started
    fit_seconds += sum(members[name].info["fit_seconds"] for name in getattr(head, "reused_", []))

    started = time.perf_counter()
    proba = head.predict_proba(validation["features"])
    predict_ms = 1000 * (time.perf_counter() - started) / len(proba)

    proba = expand_proba(proba, head.classes_, len(store.class_names))
    metrics = classification_metrics(validation["labels"], proba, store.class_names)
    metrics.update(fit_seconds=fit_seconds, predict_ms_per_image=predict_ms)
    final, refit = head, None
    if final_fit == "train+validation":
        final, refit = refitted_on_validation(store, head, train, validation, members)

    staging = folder.with_name(f".{folder.name}{TEMPORARY_MARK}{os.getpid()}")
    for leftover in folder.parent.glob(f".{folder.name}{TEMPORARY_MARK}*"):  # of killed writers
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        info = _write_run(store, head_name, head, final, staging, proba, validation, metrics, fit_seconds,
                          len(train["labels"]), refit)
        replace_folder(staging, folder)
    except OSError as error:
        raise PipelineError(f"Could not write the run {folder}: {error.strerror or error}. {RUNS_FIX}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Run(folder, final, info, metrics, tuned=head)


def refitted_on_validation(store: FeatureStore, head: Head, train: dict, validation: dict,
                           members: dict[str, Run] | None) -> tuple[Head, dict]:
    """(``head`` refitted by its ``fit_like`` on ``train``'s rows and ``validation``'s, the record of
    that refit). An ensemble takes its voters' refits from ``members`` where they were made."""
    features = ShardedFeatures([*train["features"].parts, validation["features"]])  # still not loaded
    labels = np.concatenate([train["labels"], validation["labels"]])
    groups = store.source_groups(np.concatenate([train["sources"], validation["sources"]]))
    refits = {name: run.head for name, run in (members or {}).items() if run.info.get("final_fit")}
    started = time.perf_counter()
    final = head.fit_like(features, labels, groups, **({"fitted": refits} if refits else {}))
    seconds = time.perf_counter() - started
    seconds += sum(members[name].info["final_fit"]["seconds"] for name in getattr(final, "reused_", []))
    return final, {"rows": int(len(labels)), "seconds": seconds}


def _write_run(store: FeatureStore, head_name: str, head: Head, final: Head, folder: Path, proba: np.ndarray,
               validation: dict, metrics: dict, fit_seconds: float, train_rows: int, refit: dict | None) -> dict:
    """Write ``folder``: ``final``'s files, ``head``'s validation predictions, ``metrics.json`` and
    ``run.json`` (its record, returned; ``details`` of ``head``'s tuning, ``final_fit`` of the
    refit, None without one)."""
    save_head(final, folder / MODEL_DIR)
    metrics["model_bytes"] = sum(p.stat().st_size for p in (folder / MODEL_DIR).rglob("*") if p.is_file())
    predictions = io.BytesIO()
    np.savez(predictions, proba=proba, labels=validation["labels"], sources=validation["sources"])
    atomic_write_bytes(folder / PREDICTIONS_FILE, predictions.getvalue(), RUNS_FIX)
    info = {
        "head": head_name, "params": head.get_params(), "store_key": store.key,
        "store_folder": str(store.folder.resolve()), "fit_seconds": fit_seconds,
        "train_rows": train_rows, "validation_rows": int(len(proba)),
        "details": {k.rstrip("_"): getattr(head, k) for k in
                    ("solver_", "epochs_", "top_epochs_", "precision_", "refitted_", "rows_seen_", "best_params_",
                     "search_metric", "cv_score_", "search_note_", "calibration_", "normalization_", "columns_", "holdout_scores_", "chosen_", "cv_scores_",
                     "selection_note_", "reused_")
                    if hasattr(head, k)},
        "final_fit": refit, "model_sha256": hash_folder(folder / MODEL_DIR),
    }
    write_json(folder / METRICS_FILE, metrics, RUNS_FIX)
    write_json(folder / RUN_FILE, info, RUNS_FIX)
    return info


def run_lock(folder: Path) -> FolderLock:
    """The lock held while the run ``folder`` is written."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"Cannot write runs in {folder.parent}: {error.strerror or error}. {RUNS_FIX}") from None
    return FolderLock(lock_path(folder), f"the run {folder}")


def takes_maps(store: FeatureStore) -> bool:
    """Whether the store holds block4_pool maps (for the finetune head) rather than pooled features."""
    return store.manifest["config"]["pooling"] == Pooling.BLOCK4_POOL


def store_heads(store: FeatureStore) -> list[str]:
    """What ``--heads all`` fits on this store: the finetune head on block4_pool maps, every other
    head on pooled features."""
    return [name for name in HEADS if (name in MAPS_HEADS) == takes_maps(store)]


def store_params(store: FeatureStore, head_name: str, params: dict) -> dict:
    """``params`` for ``head_name`` on this store, after checking that the head takes its features;
    the finetune head gets the weights file the maps were extracted with (block 5 starts from it)."""
    if (head_name in MAPS_HEADS) != takes_maps(store):
        pooling = store.manifest["config"]["pooling"]
        if head_name in MAPS_HEADS:
            raise PipelineError(f"The {head_name} head trains VGG16's block 5 on block4_pool maps; store "
                                f"{store.key} holds {pooling} features. Extract the maps with `features "
                                "--pooling block4_pool` (make features POOLING=block4_pool).")
        raise PipelineError(f"Store {store.key} holds block4_pool maps, which only the "
                            f"{', '.join(sorted(MAPS_HEADS))} head takes. Fit it (--head finetune), or "
                            f"extract pooled features (the default) for the {head_name} head.")
    if head_name in MAPS_HEADS and "weights" not in params:
        params = {**params, "weights": recorded_weights(store.manifest["weights"]).path}
    return params


def group_space(head_name: str, given: dict, groups: dict) -> dict:
    """The column groups ``head_name`` searches (``COLUMN_CHOICES`` for ``GROUP_SEARCH_HEADS``, and
    ``BILINEAR_CHOICE`` where ``groups`` has the bilinear group), unless ``given`` names its columns."""
    if head_name not in GROUP_SEARCH_HEADS or "columns" in given:
        return {}
    return {"columns": [*COLUMN_CHOICES, *([BILINEAR_CHOICE] if BILINEAR_GROUP in groups else [])]}


def group_params(head_name: str, groups: dict, params: dict, search: bool) -> dict:
    """``params`` with the store's column ``groups`` and block 5's columns unless given; for the
    ensemble, each member's, and (with ``search``) each member's search space widened by
    ``group_space``."""
    if head_name != "ensemble":
        return {"column_groups": groups, "columns": BLOCK5, **params}
    ensemble = head_class("ensemble")
    given = params.get("member_params") or {}
    members = {name: {"column_groups": groups, "columns": BLOCK5, **given.get(name, {})}
               for name in ensemble(**params).member_names()}
    params = {**params, "member_params": members}
    if search and "search_space" not in params:
        params["search_space"] = {name: {**ensemble.default_search_space.get(name, {}), **group_space(name, given.get(name, {}), groups)}
                                  for name in members}
    return params


def save_head(head: Head, folder: Path) -> None:
    """``head.save(folder)``, or one line saying why the folder cannot take it."""
    try:
        head.save(folder)
    except OSError as error:
        raise PipelineError(f"Could not save the head to {folder}: {error.strerror or error}. {RUNS_FIX}") from None


def fit_command(runs: Path, store: FeatureStore, head_name: str) -> tuple[str, str]:
    """The make and CLI commands that fit ``head_name`` on ``store`` into ``runs``, naming the cache
    and runs folders where they are not the defaults."""
    return command_forms(f"make head HEAD={head_name} STORE={store.key}",
                         f"bottleneck-heads head --head {head_name} --store {store.key}",
                         cache=store.folder.parent, runs=runs)


def load_run(runs: Path, store: FeatureStore, head_name: str) -> Run:
    """The head saved for this store, after its files' sha256 and store key are checked."""
    head_class(head_name)
    folder = run_folder(runs, store, head_name)
    make, cli = fit_command(runs, store, head_name)  # what each refusal below tells the user to run
    if not (folder / RUN_FILE).is_file():
        raise PipelineError(f"No fitted '{head_name}' head for store {store.key} in {runs}. "
                            f"Fit it first with `{make}` (or `{cli}`).")
    info = read_record(folder / RUN_FILE, head_name, RUN_FIELDS)
    if info["store_key"] != store.key:
        raise PipelineError(f"The '{head_name}' head in {folder} was fitted on store {info['store_key']}, "
                            f"not on {store.key}. Fit it again on this store with `{make}` (or `{cli}`).")
    actual = hash_folder(folder / MODEL_DIR)
    if actual != info["model_sha256"]:
        changed = sorted(set(actual.items()) ^ set(info["model_sha256"].items()))
        raise PipelineError(f"The saved head in {folder / MODEL_DIR} does not match the sha256 in "
                            f"{RUN_FILE} ({changed[0][0]} differs); it was modified or damaged. "
                            f"Fit it again with `{make}` (or `{cli}`).")
    metrics = read_record(folder / METRICS_FILE, head_name)
    head = head_class(head_name).load(folder / MODEL_DIR)
    return Run(folder, head, info, metrics)


def read_record(path: Path, head_name: str, fields: dict[str, type] | None = None) -> dict:
    """A run's JSON record at ``path``: a JSON object whose ``fields`` have their types; else
    one line saying that it is missing or damaged and to fit the head again."""
    try:
        record = json.loads(path.read_bytes())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        wrong = [name for name, kind in (fields or {}).items() if not isinstance(record.get(name), kind)]
        if wrong:
            raise ValueError(f"its {wrong[0]!r} field is missing or malformed")
        return record
    except (OSError, ValueError) as error:  # ValueError: not JSON, not UTF-8, or not a run record
        raise PipelineError(f"The run record {path} is missing or damaged "
                            f"({getattr(error, 'strerror', None) or error}). Fit the head again with "
                            f"`head --head {head_name}`.") from None


def hash_folder(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): file_sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def class_probabilities(head: Head, features: np.ndarray, n_classes: int) -> np.ndarray:
    """Shape (n_rows, n_classes): a fitted head's probabilities placed over every class."""
    return expand_proba(head.predict_proba(features), head.classes_, n_classes)
