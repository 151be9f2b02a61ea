"""One softmax temperature over a classifier's scores, fitted out of fold against smoothed targets."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.parallel import Parallel, delayed

LOG_BETA_BOUNDS = (-10.0, 10.0)  # the inverse temperature searched between e^-10 and e^10


class TemperatureCalibration(ClassifierMixin, BaseEstimator):
    """``estimator``'s decision scores as probabilities: ``softmax(beta_ * scores)``.

    The estimator is fitted on the training part of each of the ``cv`` (train, test) splits and
    scores its test part; ``beta_``, one inverse temperature, minimises the cross-entropy of those
    out-of-fold scores against Platt's smoothed targets: each row's own class
    ``1 - 1 / (n + 2)`` and the other classes ``1 / (n + 2)`` between them, for ``n`` scored rows.
    Against one-hot targets (scikit-learn's ``CalibratedClassifierCV(method="temperature")``) a
    set whose held-out rows are all right drives ``beta_`` towards its bound and every probability
    to 1.0000, so one wrong answer later costs tens of nats; the smoothed targets stop it short of
    certainty, as Platt's do for two classes (for two classes and ``n`` rows, they are Platt's
    targets with the classes pooled). Labels are encoded here, so any labels work (scikit-learn's
    temperature took integer labels as column indices: labels 1, 2, 3 gave every row 1/3).

    With ``ensemble`` the fold models are kept and their probabilities averaged (no fit on every
    row); without, the estimator is fitted again on every row. Every class must have rows in each
    training part (``heads._sklearn.grouped_folds`` keeps one there). Two-class scores (one
    column, the second class's) are taken as the logits ``(-s, s)``.

    Parameters
    ----------
    estimator : classifier with ``decision_function``.
    cv : list of (train, test) row index arrays.
    ensemble : bool, keep the fold models rather than refit on every row.
    n_jobs : int or None, joblib workers for the fold fits.
    fold_estimator : classifier or None, fitted on the folds in place of ``estimator`` where it
        decides as ``estimator`` does, only faster (the kernel SVM passes its twin on a precomputed
        kernel, computed once a fold rather than once per class); None: ``estimator``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    beta_ : float, the fitted inverse temperature.
    estimators_ : list of fitted estimators whose probabilities are averaged.
    """

    def __init__(self, estimator, *, cv, ensemble: bool = False, n_jobs: int | None = None, fold_estimator=None):
        self.estimator = estimator
        self.cv = cv
        self.ensemble = ensemble
        self.n_jobs = n_jobs
        self.fold_estimator = fold_estimator

    def fit(self, X, y) -> "TemperatureCalibration":
        self.classes_, y_index = np.unique(y, return_inverse=True)
        on_folds = self.estimator if self.fold_estimator is None else self.fold_estimator
        fitted = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_and_score)(clone(on_folds), X, y, train, test) for train, test in self.cv)
        tested = np.concatenate([test for _, test in self.cv])
        scores = np.concatenate([scores for _, scores in fitted])
        self.beta_ = smoothed_inverse_temperature(scores, y_index[tested])
        self.estimators_ = ([model for model, _ in fitted] if self.ensemble
                            else [clone(self.estimator).fit(X, y)])
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Shape (n_samples, n_classes), columns in ``classes_`` order."""
        return np.mean([softmax(self.beta_ * as_logits(model.decision_function(X)), axis=1)
                        for model in self.estimators_], axis=0)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _fit_and_score(estimator, X, y, train: np.ndarray, test: np.ndarray) -> tuple:
    """(``estimator`` fitted on the ``train`` rows, its logits for the ``test`` rows)."""
    estimator.fit(X[train], y[train])
    return estimator, as_logits(estimator.decision_function(X[test]))


def as_logits(scores: np.ndarray) -> np.ndarray:
    """Decision scores as one column a class: a two-class score ``s`` becomes ``(-s, s)``."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores


def smoothed_inverse_temperature(logits: np.ndarray, y_index: np.ndarray) -> float:
    """The ``beta`` minimising the mean cross-entropy of ``softmax(beta * logits)`` against
    targets ``1 - 1 / (n + 2)`` for each row's class (``y_index``) and ``1 / (n + 2)`` shared by
    the others."""
    n, classes = logits.shape
    off = 1.0 / (n + 2)
    targets = np.full((n, classes), off / (classes - 1))
    targets[np.arange(n), y_index] = 1.0 - off

    def cross_entropy(log_beta: float) -> float:
        return float(-(targets * log_softmax(np.exp(log_beta) * logits, axis=1)).sum(axis=1).mean())

    result = minimize_scalar(cross_entropy, bounds=LOG_BETA_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))
