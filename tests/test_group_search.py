"""Heads on a `blocks` store choose their column groups and normalisation by grouped cross-validation
on training rows only, and `compare` chooses its head the same way: poisoning every validation row
changes the validation figures and no choice."""

import json

import numpy as np
import pytest

from features import FeatureStore
from heads import DenseHead, HeadError, LogRegHead, SVMHead
from pipeline.compare import choose, compare_heads
from pipeline.runs import BLOCK5, COLUMN_CHOICES, fit_run
from tests.conftest import extract_args, make_cli, quick_dense_defaults, write_three_classes

GROUPS = {"a": [0, 4], "b": [4, 8], "noise": [8, 40]}


def two_signals(seed=0, n=60):
    """Group ``a`` carries the class, ``b`` carries it weakly, ``noise`` is noise (signed values, which
    the signed square root + L2 of a 4-column group blurs: the heads choose with ``normalize="none"``)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, 40)).astype(np.float32)
    X[:, :4] += 3 * y[:, None]
    X[:, 4:8] += 0.3 * y[:, None]
    return X, y


@pytest.mark.parametrize("head", [LogRegHead(C=1.0, normalize="none"), SVMHead(normalize="none"),
                                  DenseHead(epochs=20, patience=3, networks=1)])
def test_a_head_chooses_the_columns_that_carry_the_class(head):
    X, y = two_signals()
    space = {"columns": ["a", "b", "noise", "a+b+noise"]}
    head.set_params(column_groups=GROUPS, search_space=space)
    head.fit(X, y)
    assert head.columns_ == "a"
    assert head.predict_proba(X).shape == (60, 2)


def test_normalisation_is_per_group_and_columns_must_name_groups():
    from heads._sklearn import ColumnGroups, signed_sqrt_l2

    X, _ = two_signals()
    out = ColumnGroups(GROUPS, "a+noise", "sqrt_l2").fit(X).transform(X)
    scale = ((4 + 32) / 2) ** 0.5  # each group the same norm, each feature a unit mean square
    np.testing.assert_allclose(out, scale * np.hstack([signed_sqrt_l2(X[:, :4]), signed_sqrt_l2(X[:, 8:])]), rtol=1e-6)
    assert np.allclose(np.linalg.norm(out[:, :4], axis=1), scale) and np.allclose(np.linalg.norm(out[:, 4:], axis=1), scale)
    assert np.isclose(np.mean(out ** 2), 1)
    with pytest.raises(HeadError, match="names 'c', not one of the column groups a, b, noise"):
        LogRegHead(column_groups=GROUPS, columns="a+c").fit(X, np.arange(60) % 2)
    with pytest.raises(HeadError, match="needs column_groups"):
        LogRegHead(columns="a").fit(X, np.arange(60) % 2)


@pytest.fixture(scope="module")
def blocks_store(tmp_path_factory):
    cli = make_cli(tmp_path_factory.mktemp("groups"))
    data = write_three_classes(cli.cache.parent / "data", train=12, validation=6)
    assert cli(*extract_args(data, cli.cache, "--pooling", "blocks")).exit_code == 0
    return cli, FeatureStore(cli.cache / (cli.cache / "LATEST").read_text().strip())


def poison_validation(monkeypatch):
    """Every validation row's features reversed and negated, its label moved to the next class."""
    split_arrays = FeatureStore.split_arrays

    def poisoned(self, split, passes=True):
        rows = split_arrays(self, split, passes)
        if split == "validation":
            rows = {**rows, "features": -rows["features"][:, ::-1].copy(),
                    "labels": (rows["labels"] + 1) % len(self.class_names)}
        return rows
    monkeypatch.setattr(FeatureStore, "split_arrays", poisoned)


def test_heads_and_compare_choose_without_a_validation_row_in_sight(blocks_store, tmp_path, monkeypatch):
    cli, store = blocks_store
    with quick_dense_defaults():
        clean = compare_heads(store, ["logreg", "svm", "dense", "ensemble"], tmp_path / "clean")
        poison_validation(monkeypatch)
        poisoned = compare_heads(store, ["logreg", "svm", "dense", "ensemble"], tmp_path / "poisoned")

    def choices(runs):
        details = {name: json.loads((runs / store.key / name / "run.json").read_text())["details"]
                   for name in ("logreg", "svm", "dense", "ensemble")}
        return {name: (d.get("best_params"), d.get("columns"), d.get("chosen"), d["cv_score"]) for name, d in details.items()}

    assert choices(tmp_path / "clean") == choices(tmp_path / "poisoned")
    assert poisoned["chosen"]["head"] == clean["chosen"]["head"]
    assert poisoned["chosen"]["cv_scores"] == clean["chosen"]["cv_scores"]
    accuracy = lambda board: {row["head"]: row["accuracy"] for row in board["rows"]}
    assert accuracy(poisoned) != accuracy(clean)  # the poison reached validation, and only validation
    for name in ("logreg", "svm"):  # the groups were searched
        assert choices(tmp_path / "clean")[name][0]["columns"] in COLUMN_CHOICES
    assert choices(tmp_path / "clean")["dense"][1] == BLOCK5


def test_compare_chooses_the_cross_validated_best_even_against_validation(blocks_store, tmp_path):
    _, store = blocks_store
    fitted = {name: fit_run(store, name, {}, tmp_path) for name in ("logreg", "svm")}
    rows = [{"head": name, "accuracy": acc, "fit_seconds": 1.0, "intervals_95": {"accuracy": [0.0, 1.0]}}
            for name, acc in (("logreg", 0.9), ("svm", 0.5))]  # logreg the better on validation
    fitted["logreg"].info["details"]["cv_score"], fitted["svm"].info["details"]["cv_score"] = 0.6, 0.7
    chosen = choose(store, fitted, rows, [{"a": "logreg", "b": "svm", "p": 0.01}])
    assert chosen["head"] == "svm" and chosen["cv_scores"] == {"logreg": 0.6, "svm": 0.7}
    assert "cross-validated balanced accuracy (the mean recall per class) on the training rows (0.7000" in chosen["why"]
    assert "validation accuracy, 0.5000" in chosen["why"]
    fitted["logreg"].info["details"]["cv_score"] = 0.7  # a tie: the simpler head, however long its fit took
    rows[0]["fit_seconds"] = 100.0
    assert choose(store, fitted, rows, [])["head"] == "logreg"
    for run in fitted.values():  # searches off: validation decides, and the report says so
        run.info["details"]["cv_score"] = None
    assert "flatters" in choose(store, fitted, rows, [])["why"]


def test_a_logreg_on_chosen_groups_exports_to_keras_layers_that_predict_as_it_does(blocks_store, tmp_path):
    from pipeline.export import logistic_regression_model

    _, store = blocks_store
    run = fit_run(store, "logreg", {"normalize": "none"}, tmp_path)
    assert run.head.columns_ in COLUMN_CHOICES
    X = store.split_arrays("validation")["features"]
    np.testing.assert_allclose(logistic_regression_model(run.head).predict(X, verbose=0), run.head.predict_proba(X),
                               rtol=1e-4, atol=1e-5)


def test_a_dense_head_on_chosen_groups_saves_and_loads_in_safe_mode(tmp_path):
    X, y = two_signals()
    head = DenseHead(epochs=5, patience=2, column_groups=GROUPS, columns="a+b").fit(X, y)
    head.save(tmp_path / "dense")
    loaded = DenseHead.load(tmp_path / "dense")
    assert loaded.columns_ == "a+b" and loaded.cv_score_ == head.cv_score_
    np.testing.assert_allclose(loaded.predict_proba(X), head.predict_proba(X), rtol=1e-6)
