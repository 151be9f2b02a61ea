"""Uncertainty of validation metrics: bootstrap intervals, calibration error, McNemar's test."""

from __future__ import annotations

import numpy as np
from scipy import stats

N_BOOTSTRAP = 1000
ECE_BINS = 15


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, correct, bins) - np.bincount(which, confidence, bins))
    return float(gap.sum() / max(counts.sum(), 1))


def point_metrics(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    """accuracy, balanced accuracy, macro F1, log loss and ECE, from a confusion count."""
    y_pred = proba.argmax(axis=1)
    confusion = np.bincount(y_true * n_classes + y_pred, minlength=n_classes ** 2).reshape(n_classes, n_classes)
    true_counts, pred_counts, hits = confusion.sum(axis=1), confusion.sum(axis=0), np.diag(confusion)
    present = true_counts > 0
    recall = np.divide(hits, true_counts, out=np.zeros(n_classes), where=present)
    precision = np.divide(hits, pred_counts, out=np.zeros(n_classes), where=pred_counts > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n_classes),
                   where=precision + recall > 0)
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], 1e-15, 1.0)
    return {
        "accuracy": float(hits.sum() / len(y_true)),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[present | (pred_counts > 0)].mean()),
        "log_loss": float(-np.log(p_true).mean()),
        "ece": expected_calibration_error(y_true, proba),
    }


def bootstrap_intervals(y_true: np.ndarray, proba: np.ndarray, n_classes: int,
                        n_boot: int = N_BOOTSTRAP, seed: int = 0) -> dict[str, list[float]]:
    """95% percentile intervals of each ``point_metrics`` value over resampled images."""
    rng = np.random.default_rng(seed)
    draws = [point_metrics(y_true[i], proba[i], n_classes)
             for i in rng.integers(0, len(y_true), size=(n_boot, len(y_true)))]
    return {name: [float(np.percentile([d[name] for d in draws], q)) for q in (2.5, 97.5)]
            for name in draws[0]}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test on paired right/wrong outcomes: exact binomial below 25 discordant pairs.

    Returns the discordant counts ``a_only`` (A right, B wrong), ``b_only`` and the two-sided ``p``.
    """
    a_only = int(np.sum(correct_a & ~correct_b))
    b_only = int(np.sum(~correct_a & correct_b))
    n = a_only + b_only
    if n == 0:
        p = 1.0
    elif n < 25:
        p = float(stats.binomtest(min(a_only, b_only), n, 0.5).pvalue)
    else:
        statistic = (abs(a_only - b_only) - 1) ** 2 / n
        p = float(stats.chi2.sf(statistic, df=1))
    return {"a_only": a_only, "b_only": b_only, "p": p, "test": "exact" if n < 25 else "chi2"}
