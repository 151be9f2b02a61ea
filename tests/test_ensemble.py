"""The ensemble head: members tuned once, voters chosen by grouped cross-validation on training rows."""

import numpy as np
import pytest

from heads import EnsembleHead, HeadError, LogRegHead, SVMHead, create_head

FAST_MEMBERS = {"dense": {"epochs": 4, "patience": 1, "networks": 1}, "logreg": {"n_jobs": 1}, "svm": {"n_jobs": 1}}


def overlapping(n_per_class=40, n_classes=3, seed=0):
    """Classes that overlap a little, so heads disagree on some rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.2, size=(n_classes, 12))
    y = np.repeat(np.arange(n_classes), n_per_class)
    return (centres[y] + rng.normal(size=(len(y), 12))).astype(np.float32), y


def test_ensemble_votes_with_the_subset_best_by_grouped_cross_validation(tmp_path):
    X, y = overlapping()
    groups = np.arange(len(y)) // 2
    head = EnsembleHead(member_params=FAST_MEMBERS).fit(X, y, groups=groups)
    assert set(head.cv_scores_) == {"logreg", "svm", "dense", "logreg+svm", "logreg+dense", "svm+dense",
                                    "logreg+svm+dense"}
    best = max(head.cv_scores_.values(), key=lambda s: (s["balanced_accuracy"], -s["log_loss"]))
    assert head.cv_scores_["+".join(head.chosen_)]["balanced_accuracy"] == best["balanced_accuracy"] == head.cv_score_
    assert list(head.members_) == head.chosen_ and head.reused_ == []
    proba = head.predict_proba(X)
    expected = np.mean([member.predict_proba(X) for member in head.members_.values()], axis=0)
    np.testing.assert_allclose(proba, expected, atol=1e-12)
    head.save(tmp_path / "ensemble")
    np.testing.assert_allclose(EnsembleHead.load(tmp_path / "ensemble").predict_proba(X), proba, atol=1e-6)


def test_ensemble_reuses_fitted_members_and_refits_only_in_its_folds():
    X, y = overlapping()
    groups = np.arange(len(y)) // 2
    logreg = LogRegHead(search_space={"C": [0.1, 1.0]}, n_jobs=1).fit(X, y, groups=groups)
    svm = SVMHead(n_jobs=1).fit(X, y, groups=groups)
    head = EnsembleHead(members="logreg,svm").fit(X, y, groups=groups, fitted={"logreg": logreg, "svm": svm})
    assert head.reused_ == ["logreg", "svm"]
    assert all(head.members_[name] is {"logreg": logreg, "svm": svm}[name] for name in head.chosen_)
    copy = logreg.fit_like(X[:90], y[:90], groups[:90])  # what each fold fits: the tuned C, no search
    assert copy.best_params_ == logreg.best_params_ and copy.model_[-1].C == logreg.best_params_["C"]
    with pytest.raises(HeadError, match="other classes"):
        EnsembleHead(members="logreg,svm").fit(X[y < 2], y[y < 2], fitted={"logreg": logreg})


def test_ensemble_selection_folds_never_split_an_image():
    from heads._sklearn import grouped_folds
    _, y = overlapping()
    groups = np.arange(len(y)) // 4
    folds = grouped_folds(y, groups, 3)
    assert sorted(np.concatenate([test for _, test in folds])) == list(range(len(y)))
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert set(y[train]) == set(y)


def test_ensemble_is_registered_and_compared(tmp_path):
    assert create_head("ensemble").member_names() == ["logreg", "svm", "dense"]
