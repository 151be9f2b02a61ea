"""Shared fitting and saving for heads that wrap a scikit-learn estimator."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np

from heads._base import Head, check_training_data

MODEL_FILE = "model.joblib"


class SklearnHead(Head):
    """A head whose ``model_`` is a scikit-learn classifier on flattened features."""

    def _make_estimator(self, n_samples: int):
        raise NotImplementedError

    def fit(self, X, y, groups=None) -> "SklearnHead":
        X, y = check_training_data(X, y)
        self.feature_shape_ = X.shape[1:]
        self.model_ = self._make_estimator(len(X)).fit(X.reshape(len(X), -1), y)
        self.classes_ = self.model_.classes_
        return self

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
