"""The SVM's temperature fitted against one-hot targets against Platt's smoothed ones, side by side.

Run: .venv/bin/python bench/svm_temperature.py [--data DIR ...] [--subset-size 3]

For each data set of more than two classes (default: dtd_6 and monkeys_10; two classes calibrate
by Platt scaling), builds (or reuses) its `blocks` store with `bench/accuracy.py`'s `build_store`,
then fits the SVM head as `compare` does (its search on training rows) on every class and on each
run of ``--subset-size`` consecutive classes (smaller, easier sets, as a user's few-class folder
is). The head's probabilities (``TemperatureCalibration``: smoothed targets) are set beside
scikit-learn's ``CalibratedClassifierCV(method="temperature")`` (one-hot targets) wrapped around
the same searched SVM with the same grouped calibration folds and labels encoded 0..K-1.
Prints one table of validation accuracy, log loss, ECE, the share of photos whose top probability
exceeds 0.9999, the largest one photo's log loss and the inverse temperature; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, build_store, store_options  # noqa: E402  (bench/ is not a package)

from features import FeatureStore  # noqa: E402
from heads._sklearn import grouped_folds, head_pipeline
from heads._svm import CALIBRATION_FOLDS  # noqa: E402
from pipeline.runs import head_for_store  # noqa: E402
from pipeline.stats import point_metrics  # noqa: E402

DATASETS = [ROOT.parent / "shared" / "data" / name for name in ("dtd_6", "monkeys_10")]


def class_subsets(n_classes: int, size: int) -> list[list[int]]:
    """Every class, then each run of ``size`` consecutive classes."""
    runs = [list(range(start, start + size)) for start in range(0, n_classes - size + 1, size)] if size else []
    return [list(range(n_classes)), *runs]


def rows_of(arrays: dict, classes: list[int]) -> dict:
    keep = np.isin(arrays["labels"], classes)
    return {name: values[keep] for name, values in arrays.items()}


def one_hot_temperature(head, X: np.ndarray, y_index: np.ndarray, groups: np.ndarray):
    """scikit-learn's temperature scaling around ``head``'s searched SVM, on the same folds."""
    chosen = head.best_params_
    svm = head._svm(len(X), chosen.get("C"), chosen.get("kernel", "rbf"))
    folds = grouped_folds(y_index, groups, CALIBRATION_FOLDS, head.seed)
    calibrated = CalibratedClassifierCV(svm, method="temperature", cv=folds, ensemble=False, n_jobs=head.n_jobs)
    return head_pipeline(head, calibrated, chosen.get("normalize"), chosen.get("columns")).fit(X, y_index)


def scores(proba: np.ndarray, y_index: np.ndarray, beta: float) -> dict:
    metrics = point_metrics(y_index, proba, proba.shape[1])
    worst = -np.log(max(proba[np.arange(len(y_index)), y_index].min(), 1e-300))  # the least likely true class
    return {**metrics, "certain": float((proba.max(axis=1) > 0.9999).mean()), "worst": float(worst), "beta": beta}


def compare_temperatures(store: FeatureStore, classes: list[int]) -> dict:
    train, validation = rows_of(store.split_arrays("train"), classes), rows_of(store.split_arrays("validation", passes=False), classes)
    groups = store.source_groups(train["sources"])
    head = head_for_store(store, "svm", {}).fit(train["features"], train["labels"], groups=groups)
    X, X_val = (np.asarray(rows["features"], np.float32).reshape(len(rows["labels"]), -1) for rows in (train, validation))
    y_index, y_val = (np.searchsorted(head.classes_, rows["labels"]) for rows in (train, validation))
    one_hot = one_hot_temperature(head, X, y_index, groups)
    beta = one_hot[-1].calibrated_classifiers_[0].calibrators[0].beta_
    return {"one-hot": scores(one_hot.predict_proba(X_val), y_val, float(beta)),
            "smoothed": scores(head.predict_proba(X_val), y_val, head.model_[-1].beta_)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    store_options(parser, DATASETS)
    parser.add_argument("--subset-size", type=int, default=3, help="classes a subset (0: every class only)")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    print("| set | classes | targets | accuracy | log loss | ECE | top > 0.9999 | worst photo's log loss | inverse temperature |")
    print("|---|---|---|---|---|---|---|---|---|")
    for data in args.data:
        store = FeatureStore(args.cache / build_store(data, "blocks", args)["key"])
        for classes in class_subsets(len(store.class_names), args.subset_size):
            named = "all" if len(classes) == len(store.class_names) else ",".join(store.class_names[c] for c in classes)
            for targets, row in compare_temperatures(store, classes).items():
                print(f"| {data.name} | {named} | {targets} | {row['accuracy']:.3f} | {row['log_loss']:.3f} | "
                      f"{row['ece']:.3f} | {row['certain']:.2f} | {row['worst']:.1f} | {row['beta']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
