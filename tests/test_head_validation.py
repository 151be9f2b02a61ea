"""Hostile input to the heads: nonsense parameters, constant features, tiny classes.

Real Keras and scikit-learn fits on small arrays; nothing is mocked.
"""

import numpy as np
import pytest

from heads import HEADS, MAPS_HEADS, DenseHead, HeadError, LogRegHead, SVMHead, create_head, parse_params
from heads._training import holdout_split

FAST = {"dense": {"epochs": 5, "patience": 2, "networks": 1}, "logreg": {"n_jobs": 1}, "svm": {"n_jobs": 1}}
# The ensemble of the two fast members here; tests/test_ensemble.py votes with the dense head too.
FAST["ensemble"] = {"members": "logreg,svm", "member_params": {"logreg": {"n_jobs": 1}, "svm": {"n_jobs": 1}}}

POOLED_HEADS = sorted(set(HEADS) - MAPS_HEADS)  # tests/test_finetune.py: the head on maps


def blobs(n_per_class=60, n_features=16, n_classes=3, seed=0, counts=None, noise_seed=None):
    """Gaussian classes around centres drawn with ``seed``; ``noise_seed`` draws fresh rows."""
    rng = np.random.default_rng(seed)
    counts = counts or [n_per_class] * n_classes
    centres = rng.normal(scale=3.0, size=(len(counts), n_features))
    y = np.repeat(np.arange(len(counts)), counts)
    noise_rng = rng if noise_seed is None else np.random.default_rng(noise_seed)
    noise = noise_rng.normal(size=(len(y), n_features))
    return (centres[y] + noise).astype(np.float32), y


# ---------------------------------------------------------------- parameters

@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_parameter_has_a_constraint_and_the_defaults_satisfy_it(name):
    head = create_head(name)
    assert set(type(head)._parameter_constraints) == set(head.get_params())
    head._validate_params()


BAD = [
    ("dense", "units", 0, "must be an int >= 1"),
    ("dense", "units", True, "must be an int >= 1"),
    ("dense", "units", 2.0, "must be an int >= 1"),
    ("dense", "dropout", 1.0, r"must be a float in \[0, 1\)"),
    ("dense", "dropout", -0.1, r"must be a float in \[0, 1\)"),
    ("dense", "input_dropout", 1.0, r"must be a float in \[0, 1\)"),
    ("dense", "input_dropout", -0.1, r"must be a float in \[0, 1\)"),
    ("dense", "learning_rate", 0.0, "must be a finite float > 0"),
    ("dense", "learning_rate", float("nan"), "must be a finite float > 0"),
    ("dense", "learning_rate", float("inf"), "must be a finite float > 0"),
    ("dense", "epochs", 0, "must be an int >= 1"),
    ("dense", "batch_size", 0, "must be an int >= 1"),
    ("dense", "patience", -1, "must be an int >= 0"),
    ("dense", "holdout", 0.0, r"must be a float in \(0, 1\)"),
    ("dense", "holdout", 1.0, r"must be a float in \(0, 1\)"),
    ("dense", "seed", -1, "must be an int >= 0"),
    ("logreg", "C", 0.0, "must be a finite float > 0"),
    ("logreg", "C", -1, "must be a finite float > 0"),
    ("logreg", "C", float("nan"), "must be a finite float > 0"),
    ("logreg", "C", float("inf"), "must be a finite float > 0"),
    ("logreg", "C", True, "must be a finite float > 0"),
    ("logreg", "C", "1.0", "must be a finite float > 0"),
    ("logreg", "max_iter", 0, "must be an int >= 1"),
    ("logreg", "cv_folds", 1, "must be an int >= 2"),
    ("logreg", "search_max_samples", 1, "must be an int >= 2"),
    ("logreg", "n_jobs", 0, "must be -1 or an int >= 1"),
    ("logreg", "n_jobs", -2, "must be -1 or an int >= 1"),
    ("logreg", "n_jobs", -1.0, "must be -1 or an int >= 1"),
    ("logreg", "n_jobs", True, "must be -1 or an int >= 1"),
    ("logreg", "search_space", [0.1, 1.0], "must be None or a dict"),
    ("svm", "C", float("-inf"), "must be a finite float > 0"),
    ("svm", "solver", "poly", "must be one of 'auto', 'rbf', 'linear'"),
    ("svm", "rbf_max_samples", 0, "must be an int >= 1"),
    ("svm", "cv_folds", 0, "must be an int >= 2"),
    ("svm", "search_max_samples", 0, "must be an int >= 2"),
    ("svm", "n_jobs", 0, "must be -1 or an int >= 1"),
    ("svm", "seed", -3, "must be an int >= 0"),
    ("svm", "search_space", "C=1", "must be None or a dict"),
    ("svm", "normalize", "l2", "must be one of 'none', 'sqrt_l2'"),
    ("svm", "calibration", "platt", "must be one of 'auto', 'sigmoid', 'isotonic', 'temperature'"),
    ("logreg", "normalize", "sqrt", "must be one of 'none', 'sqrt_l2'"),
    ("dense", "refit", 1, "must be a bool"),
    ("ensemble", "members", "logreg", "must be two or more of logreg, svm, dense, comma-separated"),
    ("ensemble", "members", "logreg,forest", "must be two or more of logreg, svm, dense, comma-separated"),
    ("ensemble", "cv_folds", 1, "must be an int >= 2"),
    ("ensemble", "member_params", [1], "must be None or a dict"),
]


@pytest.mark.parametrize("name, param, value, rule", BAD)
def test_fit_refuses_a_bad_parameter_in_one_line_before_fitting(name, param, value, rule):
    head = create_head(name, **{param: value})  # __init__ only stores
    assert getattr(head, param) is value
    X, y = blobs(n_per_class=4, n_features=4)
    with pytest.raises(HeadError, match=f"^{name} parameter '{param}' {rule}. Received: ") as error:
        head.fit(X, y)
    assert "\n" not in str(error.value) and str(error.value).endswith(repr(value))
    assert not hasattr(head, "classes_")


def test_refusal_reads_as_the_issue_asks():
    with pytest.raises(HeadError) as error:
        DenseHead(dropout=1.0).fit(*blobs(n_per_class=4, n_features=4))
    assert str(error.value) == "dense parameter 'dropout' must be a float in [0, 1). Received: 1.0"


@pytest.mark.parametrize("name, params", [
    ("dense", {"dropout": 0.0, "patience": 0, "seed": np.int64(3), "learning_rate": 1}),
    ("logreg", {"C": 1, "n_jobs": 1, "search_space": None, "cv_folds": 2}),
    ("logreg", {"C": np.float32(0.5), "n_jobs": -1, "search_space": {"C": [1.0]}}),
    ("svm", {"solver": "linear", "n_jobs": 2, "rbf_max_samples": 1, "seed": 0}),
])
def test_edge_values_are_accepted(name, params):
    create_head(name, **params)._validate_params()


@pytest.mark.parametrize("head_class, pairs, message", [
    (DenseHead, ["dropout=1"], r"^dense parameter 'dropout' must be a float in \[0, 1\). Received: 1.0$"),
    (DenseHead, ["units=0"], "^dense parameter 'units' must be an int >= 1. Received: 0$"),
    (LogRegHead, ["C=nan"], "^logreg parameter 'C' must be a finite float > 0. Received: nan$"),
    (LogRegHead, ["C=inf"], "^logreg parameter 'C' must be a finite float > 0. Received: inf$"),
    (LogRegHead, ["n_jobs=0"], "^logreg parameter 'n_jobs' must be -1 or an int >= 1. Received: 0$"),
    (SVMHead, ["solver=poly"], "^svm parameter 'solver' must be one of 'auto', 'rbf', 'linear'. "
                               "Received: 'poly'$"),
])
def test_parse_params_refuses_a_bad_value_after_converting_it(head_class, pairs, message):
    with pytest.raises(HeadError, match=message):
        parse_params(head_class, pairs)


def test_cli_refuses_a_bad_param_before_writing_anything(cli, tmp_path):
    result = cli("head", "--head", "dense", "--param", "dropout=1.5",
                 "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code != 0
    assert "dense parameter 'dropout' must be a float in [0, 1). Received: 1.5" in result.output
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- constant features

def constant_columns(noise_seed=None):
    """Blobs whose first four columns are zero on every training row (like dead VGG16 channels)."""
    X, y = blobs(n_per_class=50, n_features=16, n_classes=2, noise_seed=noise_seed)
    X[:, :4] = 0.0
    return X, y


def midpoint(X, y):
    """A row half-way between the two classes' centres: the head should be unsure of it."""
    return ((X[y == 0].mean(axis=0) + X[y == 1].mean(axis=0)) / 2)[None, :]


@pytest.mark.parametrize("name", POOLED_HEADS)
def test_a_feature_constant_in_training_cannot_push_a_head_to_certainty(name, tmp_path):
    from sklearn.metrics import log_loss
    X, y = constant_columns()
    X_test, y_test = constant_columns(noise_seed=1)
    head = create_head(name, **FAST[name]).fit(X, y)
    assert (head.predict(X_test) == y_test).mean() > 0.95  # still learns the separable problem
    hostile = X_test.copy()
    hostile[:, :4] = 1e3  # far outside the training range, where training saw only zeros
    proba = head.predict_proba(hostile)
    assert np.isfinite(proba).all() and (head.predict(hostile) == y_test).mean() > 0.9
    assert log_loss(y_test, proba / proba.sum(axis=1, keepdims=True), labels=head.classes_) < 0.5
    unsure = midpoint(X, y)
    unsure[0, :4] = 1e3  # a "1x1 red pixel": nothing but the dead channels lit
    assert head.predict_proba(unsure).max() < 0.999
    head.save(tmp_path / name)  # the clipping survives saving (built-in layers / steps only)
    np.testing.assert_allclose(type(head).load(tmp_path / name).predict_proba(hostile), proba, atol=1e-6)


@pytest.mark.parametrize("name", POOLED_HEADS)
def test_a_near_constant_feature_cannot_push_a_head_to_certainty(name):
    """One training row holds a small value; a huge one at prediction is clipped to it."""
    X, y = constant_columns()
    X[0, :4] = 0.01
    head = create_head(name, **FAST[name]).fit(X, y)
    hostile = np.repeat(midpoint(X, y), 2, axis=0)
    hostile[:, :4] = [[1e6] * 4, [-1e6] * 4]
    clipped = hostile.copy()
    clipped[:, :4] = [[0.01] * 4, [0.0] * 4]  # the training range of those columns
    np.testing.assert_allclose(head.predict_proba(hostile), head.predict_proba(clipped), atol=1e-6)
    # The dense head, refitted on every row (the 0.01 row included), may lean on that one row's
    # rare value as hard as any training value, but no further: short of certainty.
    assert head.predict_proba(hostile).max() < (0.9999 if name == "dense" else 0.999)


def test_dense_head_clips_inputs_to_the_training_range_with_builtin_layers():
    import keras
    X, y = constant_columns()
    head = DenseHead(epochs=2, networks=1).fit(X, y)
    kinds = [type(layer).__name__ for layer in head.model_.layers]
    assert kinds[:4] == ["Flatten", "Normalization", "Activation", "Normalization"]
    assert all(type(layer).__module__.startswith("keras.") for layer in head.model_.layers)
    clip = keras.Sequential(head.model_.layers[:3])
    inside = clip(X).numpy()
    assert inside.min() >= -1 and inside.max() <= 1
    assert np.abs(clip(X * 100).numpy()).max() <= 1
    standardised = keras.Sequential(head.model_.layers[:4])(X).numpy()  # refitted: statistics of every row
    assert np.abs(standardised[:, :4]).max() == 0  # the constant columns: centred, divided by 1
    np.testing.assert_allclose(standardised[:, 4:].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(standardised[:, 4:].std(axis=0), 1, atol=1e-3)


def test_dense_statistics_stream_from_memory_mapped_shards(tmp_path):
    from features.store import ShardedFeatures

    from heads._dense import _statistics
    X, _ = constant_columns()
    parts = []
    for number, start in enumerate(range(0, len(X), 30)):
        np.save(tmp_path / f"shard-{number}.npy", X[start:start + 30])
        parts.append(np.load(tmp_path / f"shard-{number}.npy", mmap_mode="r"))
    rows = np.arange(5, 95)
    low, high, mean, variance = _statistics(ShardedFeatures(parts), rows, block=17)
    np.testing.assert_allclose(low, X[rows].min(axis=0))
    np.testing.assert_allclose(high, X[rows].max(axis=0))
    np.testing.assert_allclose(mean, X[rows].mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(variance, X[rows].var(axis=0, dtype=np.float64), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- tiny classes

@pytest.mark.parametrize("rows", [1, 2, 3])
@pytest.mark.parametrize("name", POOLED_HEADS)
def test_a_class_with_few_training_rows_still_fits_and_predicts(name, rows):
    X, y = blobs(counts=[30, 30, rows], n_features=8)
    params = dict(FAST[name])
    if name in ("logreg", "svm"):
        params["search_space"] = {"C": [0.1, 1.0]}
    elif name == "ensemble":
        params["search_space"] = {"logreg": {"C": [0.1, 1.0]}, "svm": {"C": [0.1, 1.0]}}
    elif name == "dense":  # trained long enough to learn the tiny class, which its class weights let it
        params.update(epochs=30, patience=5)
    head = create_head(name, **params).fit(X, y)
    proba = head.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (head.predict(X[:60]) == y[:60]).mean() > 0.9
    if name == "dense":
        assert (head.predict(X[60:]) == 2).all()
        return
    if name == "ensemble":
        assert head.selection_note_ == {1: "selection skipped: class 2 has 1 training image; every member votes",
                                        2: "selection used 2 folds, not 3: class 2 has 2 training images",
                                        3: None}[rows]
        return
    if rows == 1:
        assert head.search_note_ == "search skipped: class 2 has 1 training image"
        assert head.best_params_ == {} and head.cv_score_ is None
    elif rows == 2:
        assert head.search_note_ == "search used 2 folds, not 3: class 2 has 2 training images"
        assert head.best_params_["C"] in (0.1, 1.0) and np.isfinite(head.cv_score_)
    else:
        assert head.search_note_ is None and head.best_params_["C"] in (0.1, 1.0)
    if name == "svm":
        assert head.calibration_ == {1: "sigmoid, in-sample: class 2 has 1 training row",
                                     2: "temperature, 2-fold: class 2 has 2 training rows",
                                     3: "temperature, 3-fold"}[rows]


def test_small_class_is_counted_in_images_not_augmented_rows():
    """Three augmented passes of one image are still one image: the search is skipped."""
    X, y = blobs(counts=[30, 30, 3], n_features=8)
    groups = np.r_[np.arange(60), [60, 60, 60]]
    head = LogRegHead(search_space={"C": [0.1, 1.0]}, n_jobs=1).fit(X, y, groups=groups)
    assert head.search_note_ == "search skipped: class 2 has 1 training image"


@pytest.mark.parametrize("rows", [1, 2])
def test_dense_holdout_keeps_every_class_in_training(rows):
    X, y = blobs(counts=[20, 20, rows], n_features=8)
    head = DenseHead(holdout=0.5)
    fit_rows, stop_rows = holdout_split(y, None, head.holdout, head.seed)
    assert set(y[fit_rows]) == {0, 1, 2} and len(stop_rows) > 0
    assert sorted(np.r_[fit_rows, stop_rows]) == list(range(len(y)))
    groups = np.arange(len(y)) // 2  # pairs of rows share a group: never split
    fit_rows, stop_rows = holdout_split(y, groups, head.holdout, head.seed)
    assert not set(groups[fit_rows]) & set(groups[stop_rows])


def test_dense_with_one_image_per_class_stops_on_the_training_loss():
    """Nothing to hold out: early stopping watches the training loss. Steps ten times the default
    size, so that two rows under heavy dropout are learnt whatever order the batches come in."""
    X, y = blobs(counts=[1, 1], n_features=8)
    head = DenseHead(epochs=30, patience=5, learning_rate=0.01).fit(X, y)
    assert all(1 <= epochs <= 30 for epochs in head.epochs_) and (head.predict(X) == y).all()
