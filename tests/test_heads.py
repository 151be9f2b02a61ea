"""Heads on plain arrays: fit, save, load, predict, and their parameter handling."""

import numpy as np
import pytest

from heads import HEADS, HeadError, LogRegHead, SVMHead, create_head, parse_params


def blobs(n_per_class=60, n_features=32, n_classes=3, seed=0, shape=None):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(n_classes, n_features))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = (centres[y] + rng.normal(size=(len(y), n_features))).astype(np.float32)
    return (X.reshape(len(y), *shape) if shape else X), y


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_fits_saves_loads_and_predicts_identically(name, tmp_path):
    X, y = blobs()
    X_new, y_new = blobs(seed=0, n_per_class=20)
    head = create_head(name).fit(X, y)
    proba = head.predict_proba(X_new)
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (head.predict(X_new) == y_new).mean() > 0.9
    head.save(tmp_path / name)
    reloaded = type(head).load(tmp_path / name)
    np.testing.assert_array_equal(reloaded.predict_proba(X_new), proba)
    np.testing.assert_array_equal(reloaded.classes_, head.classes_)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_accepts_unpooled_feature_maps(name):
    X, y = blobs(shape=(2, 2, 8))
    head = create_head(name).fit(X, y)
    assert head.predict_proba(X).shape == (180, 3)
    with pytest.raises(HeadError, match="fitted on features of shape"):
        head.predict_proba(X.reshape(180, -1))


def test_svm_chooses_its_solver_by_training_rows():
    X, y = blobs(n_per_class=50)
    assert SVMHead().fit(X, y).solver_ == "rbf"
    assert SVMHead(rbf_max_samples=100).fit(X, y).solver_ == "linear"


def test_params_are_typed_from_defaults():
    assert parse_params(LogRegHead, ["C=0.5", "max_iter=50"]) == {"C": 0.5, "max_iter": 50}
    assert parse_params(SVMHead, ["solver=linear"]) == {"solver": "linear"}


@pytest.mark.parametrize("pairs, message", [
    (["gamma=1"], "Unknown parameter 'gamma' for head 'logreg'; it takes C, max_iter"),
    (["C"], "--param takes name=value"),
    (["C=high"], "'C' must be a float"),
])
def test_bad_params_name_the_problem(pairs, message):
    with pytest.raises(HeadError, match=message):
        parse_params(LogRegHead, pairs)


def test_unknown_head_lists_the_names():
    with pytest.raises(HeadError, match="choose from dense, logreg, svm"):
        create_head("forest")


def test_unfitted_head_and_single_class_are_refused():
    with pytest.raises(HeadError, match="not fitted"):
        LogRegHead().predict_proba(np.zeros((2, 4)))
    with pytest.raises(HeadError, match="at least two classes"):
        LogRegHead().fit(np.zeros((4, 4)), np.zeros(4))
