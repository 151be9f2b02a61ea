"""The SVM's softmax temperature: any labels, and short of certainty on a separable set."""

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from heads._calibration import TemperatureCalibration, smoothed_inverse_temperature
from heads._sklearn import grouped_folds
from heads._svm import SVMHead


def separable(n_per_class=30, classes=3, seed=0):
    """Three blobs far apart, non-negative as pooled features are, each class lighting its own two
    columns: every held-out row is right, whatever the fold and the normalisation."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    X = np.abs(rng.normal(0.0, 1.0, (len(y), 8)))
    for label in range(classes):
        X[y == label, 2 * label:2 * label + 2] += 6.0
    return X.astype(np.float32), y


@pytest.mark.parametrize("labels", [[1, 2, 3], [0, 3, 7], ["cat", "dog", "fox"]])
def test_svm_probabilities_do_not_depend_on_how_classes_are_labelled(labels):
    X, y = separable()
    reference = SVMHead(n_jobs=1).fit(X, y).predict_proba(X)
    head = SVMHead(n_jobs=1).fit(X, np.asarray(labels)[y])
    assert head.calibration_ == "temperature, 3-fold"
    np.testing.assert_allclose(head.predict_proba(X), reference, atol=1e-9)
    assert list(head.predict(X[::30])) == labels


def test_a_separable_set_leaves_the_svm_short_of_certainty():
    X, y = separable()
    head = SVMHead(n_jobs=1).fit(X, y)
    proba = head.predict_proba(X)
    assert (proba.argmax(axis=1) == y).all()
    assert 0.97 < proba.max(axis=1).mean() and proba.max() < 0.9999  # one-hot targets: 1.0000 for every row
    assert proba.min() > 1e-6  # a wrong answer at this confidence costs under 14 nats


def test_the_temperature_is_fitted_on_held_out_scores_only():
    X, y = separable(n_per_class=20)
    folds = grouped_folds(y, None, 3)
    model = TemperatureCalibration(LinearSVC(C=0.01), cv=folds, ensemble=True).fit(X, y)
    held_out = np.concatenate([test for _, test in folds])
    scores = np.concatenate([fold.decision_function(X[test]) for fold, (_, test) in zip(model.estimators_, folds)])
    assert model.beta_ == pytest.approx(smoothed_inverse_temperature(scores, y[held_out]))
    assert len(model.estimators_) == 3  # ensemble: the fold models vote, no fit on every row


def test_smoothed_targets_bound_the_temperature_that_one_hot_targets_would_not():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [1.5, -0.5], [-1.0, 1.0]])
    y_index = np.array([0, 1, 0, 1])
    beta = smoothed_inverse_temperature(logits, y_index)
    right = np.exp(beta * 2.0) / (np.exp(beta * 2.0) + 1)  # every margin is 2: each row's own probability
    assert right == pytest.approx(1 - 1 / 6, abs=1e-4)  # Platt's target for 4 rows, not the bound e^10
