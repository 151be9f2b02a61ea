"""Validation metrics of one head, as plain JSON-ready numbers."""

from __future__ import annotations

import numpy as np
from sklearn import metrics

from pipeline.stats import bootstrap_intervals, point_metrics


def expand_proba(proba: np.ndarray, head_classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Place a head's probability columns (its ``classes_``) into all ``n_classes`` columns."""
    full = np.zeros((len(proba), n_classes))
    full[:, np.asarray(head_classes, dtype=int)] = proba
    return full


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, log loss and ECE with 95% bootstrap intervals,
    per-class precision/recall and the confusion matrix.

    ``proba`` has shape (n_samples, n_classes) over every class in ``class_names``.
    """
    labels = list(range(len(class_names)))
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = proba.argmax(axis=1)
    precision, recall, _, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n_samples": int(len(y_true)),
        **point_metrics(y_true, proba, len(class_names)),
        "intervals_95": bootstrap_intervals(y_true, proba, len(class_names)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "support": int(s)}
            for name, p, r, s in zip(class_names, precision, recall, support)
        },
        "confusion_matrix": metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
