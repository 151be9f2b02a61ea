"""Where a scikit-learn head's fits run: a small fit in this process (starting joblib's worker
processes costs seconds it never wins back), a large one on ``n_jobs`` workers, and the same
choice either way."""

import joblib
import numpy as np
import pytest

import heads._sklearn
from heads import LogRegHead, SVMHead
from heads._sklearn import IN_PROCESS_VALUES, fit_workers
from tests.test_heads import blobs


def test_a_small_fit_runs_in_process_and_a_large_one_on_workers():
    assert fit_workers(-1, IN_PROCESS_VALUES - 1) == 1
    assert fit_workers(-1, IN_PROCESS_VALUES) == -1
    assert fit_workers(4, IN_PROCESS_VALUES * 10) == 4
    with joblib.parallel_config(backend="threading"):  # as a Dask cluster the caller configured
        assert fit_workers(-1, 10) == -1


@pytest.mark.parametrize("head_class", [LogRegHead, SVMHead])
def test_in_process_and_on_workers_the_search_chooses_the_same(head_class, monkeypatch):
    X, y = blobs(n_per_class=30, n_features=64, n_classes=3, seed=1)
    X += np.random.default_rng(2).normal(scale=4.0, size=X.shape).astype(np.float32)  # not separable
    groups = np.arange(len(y)) // 2
    space = {"C": [0.001, 0.1, 10.0]}
    small = head_class(search_space=space).fit(X, y, groups)
    assert small.n_jobs_ == 1
    monkeypatch.setattr(heads._sklearn, "IN_PROCESS_VALUES", 0)  # the same rows, on two workers
    workers = head_class(search_space=space, n_jobs=2).fit(X, y, groups)
    assert workers.n_jobs_ == 2
    assert small.best_params_ == workers.best_params_
    assert small.cv_score_ == pytest.approx(workers.cv_score_)
    np.testing.assert_allclose(small.predict_proba(X), workers.predict_proba(X), atol=1e-6)
