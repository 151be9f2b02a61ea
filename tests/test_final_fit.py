"""`--final-fit train+validation` (the default, `auto`, for every head but finetune): each head is
tuned, chosen and scored on validation as always, then refitted with its choices on the training
and validation rows, and that refit is what a run saves (so what predict and export use, and what a
test split scores)."""

import json
from pathlib import Path

import numpy as np
import pytest

from features import FeatureStore
from heads import EnsembleHead
from pipeline.compare import compare_heads
from pipeline.errors import PipelineError
from pipeline.export import export_run
from pipeline.runs import PREDICTIONS_FILE, fit_run, load_run, resolved_final_fit
from tests.conftest import extract_args, make_cli, quick_dense_defaults, write_three_classes

BOTH = "train+validation"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A `blocks` store of three classes: 12 training, 6 validation and 4 test images each."""
    cli = make_cli(tmp_path_factory.mktemp("final_fit"))
    data = write_three_classes(cli.cache.parent / "data", train=12, validation=6, test=4)
    assert cli(*extract_args(data, cli.cache, "--pooling", "blocks")).exit_code == 0
    return FeatureStore(cli.cache / (cli.cache / "LATEST").read_text().strip())


@pytest.fixture
def photos(store):
    """One training, one validation and one test photo of ``store`` (its data folder's)."""
    root = Path(store.manifest["data_root"])
    return [next((root / split / "alpha").iterdir()) for split in ("train", "validation", "test")]


def every_labelled_row(store):
    """Features, labels and groups of the training rows then the validation rows."""
    train, validation = store.split_arrays("train"), store.split_arrays("validation", passes=False)
    sources = np.concatenate([train["sources"], validation["sources"]])
    return (np.concatenate([train["features"], validation["features"]]),
            np.concatenate([train["labels"], validation["labels"]]), store.source_groups(sources))


def test_a_run_saves_the_refit_and_keeps_the_tuned_heads_validation_figures(store, tmp_path):
    tuned = fit_run(store, "logreg", {}, tmp_path / "train", final_fit="train")
    refitted = fit_run(store, "logreg", {}, tmp_path / "both")  # auto
    assert refitted.metrics["accuracy"] == tuned.metrics["accuracy"]
    assert refitted.info["details"]["best_params"] == tuned.info["details"]["best_params"]
    saved = [np.load(tmp_path / runs / store.key / "logreg" / PREDICTIONS_FILE)["proba"] for runs in ("train", "both")]
    np.testing.assert_allclose(saved[1], saved[0])  # the tuned head's validation predictions in both
    X, y, groups = every_labelled_row(store)
    assert refitted.info["final_fit"]["rows"] == len(y) and tuned.info["final_fit"] is None

    loaded = load_run(tmp_path / "both", store, "logreg").head  # what predict and export use
    expected = tuned.head.fit_like(X, y, groups).predict_proba(X)
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-6)
    unrefitted = load_run(tmp_path / "train", store, "logreg").head.predict_proba(X)
    assert np.abs(unrefitted - expected).max() > 1e-5

    exported = tmp_path / "exported"  # an export says which photos its head learnt from
    export_run(store, load_run(tmp_path / "both", store, "logreg"), exported)
    assert json.loads((exported / "export.json").read_text())["final_fit"]["rows"] == len(y)


def test_an_ensemble_keeps_its_selection_and_takes_its_voters_refits_as_given():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    X = (rng.normal(size=(60, 12)) + 1.5 * np.eye(3)[y] @ rng.normal(size=(3, 12))).astype(np.float32)
    ensemble = EnsembleHead(members="logreg,svm").fit(X[::2], y[::2])
    voter = ensemble.chosen_[0]
    given = ensemble.members_[voter].fit_like(X, y)
    refit = ensemble.fit_like(X, y, fitted={voter: given})
    assert refit.chosen_ == ensemble.chosen_ and refit.cv_scores_ == ensemble.cv_scores_
    assert refit.members_[voter] is given and refit.reused_ == [voter]
    for name, member in refit.members_.items():
        assert member.best_params_ == ensemble.members_[name].best_params_  # nothing searched again
    alone = ensemble.fit_like(X, y)  # every voter refitted by the ensemble itself
    assert alone.reused_ == []
    np.testing.assert_allclose(alone.predict_proba(X), refit.predict_proba(X), atol=1e-6)
    assert np.abs(alone.predict_proba(X) - ensemble.predict_proba(X)).max() > 1e-3


def test_compare_refits_every_head_once_and_scores_the_refit_on_test(store, tmp_path):
    with quick_dense_defaults():
        board = compare_heads(store, ["logreg", "svm", "dense", "ensemble"], tmp_path)
    runs = {name: load_run(tmp_path, store, name) for name in ("logreg", "svm", "dense", "ensemble")}
    ensemble = runs["ensemble"]
    assert ensemble.head.reused_ == ensemble.head.chosen_  # the saved refit, from its voters' refits
    test = store.split_arrays("test", passes=False)
    for voter in ensemble.head.chosen_:  # the members' saved refits, not refitted again
        np.testing.assert_allclose(ensemble.head.members_[voter].predict_proba(test["features"]),
                                   runs[voter].head.predict_proba(test["features"]), atol=1e-5)
    chosen = runs[board["chosen"]["head"]].head
    accuracy = float(np.mean(chosen.predict(test["features"]) == test["labels"]))
    assert board["chosen"]["test"]["accuracy"] == pytest.approx(accuracy)
    assert "refitted with the same choices on the training and validation rows" in board["chosen"]["why"]
    record = json.loads((tmp_path / store.key / "ensemble" / "run.json").read_text())
    assert record["final_fit"]["rows"] == len(every_labelled_row(store)[1])


def test_auto_refits_where_the_head_can_and_a_refit_it_cannot_is_refused_before_any_fit(store, tmp_path):
    assert [resolved_final_fit(name, "auto") for name in ("logreg", "finetune")] == [BOTH, "train"]
    with pytest.raises(PipelineError, match="finetune head cannot be refitted .* dense, logreg, svm, ensemble can"):
        resolved_final_fit("finetune", BOTH)
    with pytest.raises(PipelineError, match="--final-fit must be one of auto, train, train\\+validation"):
        fit_run(store, "logreg", {}, tmp_path, final_fit="validation")
    assert not (tmp_path / store.key).exists()


def test_predict_warns_of_photos_the_saved_head_learnt_from(store, photos, tmp_path):
    cli = make_cli(tmp_path)
    for final_fit, learnt in (("auto", "2 of the 3 images are photos the head learnt from (1 train and 1 validation)"),
                              ("train", "1 of the 3 images are photos the head learnt from (1 train)")):
        assert cli("head", "--head", "logreg", "--final-fit", final_fit, "--store", store.folder,
                   "--runs", cli.runs).exit_code == 0
        result = cli("predict", *photos, "--head", "logreg", "--store", store.folder, "--runs", cli.runs)
        assert result.exit_code == 0 and len(result.stdout.splitlines()) == 3
        assert f"warning: {learnt}" in result.stderr
    assert "warning" not in cli("predict", photos[2], "--head", "logreg", "--store", store.folder,
                                "--runs", cli.runs).stderr
