"""Shared fitting, searching and saving for heads that wrap a scikit-learn estimator."""

from __future__ import annotations

from contextlib import nullcontext
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
    runs the fits on ``n_jobs`` local workers, or on the Dask cluster while a Dask client
    is open, as under ``--backend dask``), then fits on all rows with them. The choice
    is kept as ``best_params_`` and the mean fold accuracy as ``cv_score_``. Beyond
    ``search_max_samples`` training rows the search runs on whole groups drawn at random
    (seeded) up to that many rows: the best candidates rarely change with more rows, while
    the search's cost grows with them; the final fit always uses every row.
    """

    def _make_estimator(self, n_samples: int, **overrides):
        """The final fitted pipeline, with ``overrides`` of head parameters."""
        raise NotImplementedError

    def _search_grid(self, n_samples: int) -> tuple[object, list[dict], dict]:
        """(uncalibrated pipeline, sklearn param grid, sklearn name -> head name)."""
        raise NotImplementedError

    def fit(self, X, y, groups=None) -> "SklearnHead":
        X, y = check_training_data(np.asarray(X, dtype=np.float32), y)
        self.feature_shape_ = X.shape[1:]
        X = X.reshape(len(X), -1)
        self.best_params_, self.cv_score_ = self._search(X, y, groups) if self.search_space else ({}, None)
        self.model_ = self._make_estimator(len(X), **self.best_params_).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def _search(self, X, y, groups) -> tuple[dict, float]:
        n_samples = len(y)
        groups = np.arange(n_samples) if groups is None else np.asarray(groups)
        rows = search_sample(groups, self.search_max_samples)
        X, y, groups = X[rows], y[rows], groups[rows]
        smallest_class = np.unique(y, return_counts=True)[1].min()
        folds = min(self.cv_folds, len(np.unique(groups)), smallest_class)
        if folds < 2:
            raise HeadError(f"Too few training images per class for a {self.cv_folds}-fold search; "
                            "pass --no-search.")
        estimator, grid, names = self._search_grid(n_samples)  # the solver the final fit will use
        search = GridSearchCV(estimator, grid, cv=GroupKFold(n_splits=folds), scoring="accuracy",
                              n_jobs=self.n_jobs, refit=False)
        with _search_backend():
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


def search_sample(groups: np.ndarray, max_samples: int, seed: int = 0) -> np.ndarray:
    """Indices of all rows, or of whole groups drawn at random up to about ``max_samples`` rows."""
    if len(groups) <= max_samples:
        return np.arange(len(groups))
    unique = np.random.default_rng(seed).permutation(np.unique(groups))
    chosen = unique[:max(2, len(unique) * max_samples // len(groups))]
    return np.flatnonzero(np.isin(groups, chosen))


def _search_backend():
    """joblib's ``dask`` backend while a Dask client is open, else joblib's default (local)."""
    try:
        from distributed import default_client
        default_client()
    except (ImportError, ValueError):  # Dask not installed, or no client open
        return nullcontext()
    return joblib.parallel_config(backend="dask")
