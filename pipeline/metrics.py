"""Validation metrics of one head, as plain JSON-ready numbers."""

from __future__ import annotations

import numpy as np
from sklearn import metrics


def expand_proba(proba: np.ndarray, head_classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Place a head's probability columns (its ``classes_``) into all ``n_classes`` columns."""
    full = np.zeros((len(proba), n_classes))
    full[:, np.asarray(head_classes, dtype=int)] = proba
    return full


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, log loss, per-class precision/recall, confusion.

    ``proba`` has shape (n_samples, n_classes) over every class in ``class_names``.
    """
    labels = list(range(len(class_names)))
    y_pred = proba.argmax(axis=1)
    precision, recall, _, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n_samples": int(len(y_true)),
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(metrics.f1_score(y_true, y_pred, labels=labels, average="macro",
                                           zero_division=0)),
        "log_loss": float(metrics.log_loss(y_true, _clipped(proba), labels=labels)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "support": int(s)}
            for name, p, r, s in zip(class_names, precision, recall, support)
        },
        "confusion_matrix": metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def _clipped(proba: np.ndarray) -> np.ndarray:
    """Probabilities kept off 0 and renormalised, so log loss stays finite."""
    proba = np.clip(proba, 1e-15, 1.0)
    return proba / proba.sum(axis=1, keepdims=True)
