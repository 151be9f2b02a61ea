"""Shared fitting, searching and saving for heads that wrap a scikit-learn estimator."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.model_selection import GridSearchCV, GroupKFold

from heads._base import Head, HeadError, check_training_data

MODEL_FILE = "model.joblib"


class SklearnHead(Head):
    """A head whose ``model_`` is a scikit-learn classifier on flattened features.

    With a ``search_space`` (head parameter name -> candidate values), ``fit`` first
    picks the candidates with the best cross-validated accuracy on the training rows
    (``GroupKFold`` on ``groups``, so augmented twins of an image share a fold; joblib
    runs the fits on ``n_jobs`` workers), then fits on all rows with them. The choice
    is kept as ``best_params_`` and the mean fold accuracy as ``cv_score_``.
    """

    def _make_estimator(self, n_samples: int, **overrides):
        """The final fitted pipeline, with ``overrides`` of head parameters."""
        raise NotImplementedError

    def _search_grid(self, n_samples: int) -> tuple[object, list[dict], dict]:
        """(uncalibrated pipeline, sklearn param grid, sklearn name -> head name)."""
        raise NotImplementedError

    def fit(self, X, y, groups=None) -> "SklearnHead":
        X, y = check_training_data(X, y)
        self.feature_shape_ = X.shape[1:]
        X = X.reshape(len(X), -1)
        self.best_params_, self.cv_score_ = self._search(X, y, groups) if self.search_space else ({}, None)
        self.model_ = self._make_estimator(len(X), **self.best_params_).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def _search(self, X, y, groups) -> tuple[dict, float]:
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        smallest_class = np.unique(y, return_counts=True)[1].min()
        folds = min(self.cv_folds, len(np.unique(groups)), smallest_class)
        if folds < 2:
            raise HeadError(f"Too few training images per class for a {self.cv_folds}-fold search; "
                            "pass --no-search.")
        estimator, grid, names = self._search_grid(len(y))
        search = GridSearchCV(estimator, grid, cv=GroupKFold(n_splits=folds), scoring="accuracy",
                              n_jobs=self.n_jobs, refit=False)
        search.fit(X, y, groups=groups)
        best = {names[key]: value for key, value in search.best_params_.items()}
        return best, float(search.best_score_)

    def predict_proba(self, X) -> np.ndarray:
        """Shape (n_samples, n_classes), columns in ``classes_`` order."""
        self._check_fitted()
        X = self._check_features(X)
        return self.model_.predict_proba(X.reshape(len(X), -1))

    def save(self, folder: Path) -> None:
        self._check_fitted()
        Path(folder).mkdir(parents=True, exist_ok=True)
        joblib.dump(self, Path(folder) / MODEL_FILE)

    @classmethod
    def load(cls, folder: Path) -> "SklearnHead":
        return joblib.load(Path(folder) / MODEL_FILE)
