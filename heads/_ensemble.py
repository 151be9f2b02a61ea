"""A soft vote of the tuned heads, the voters chosen by grouped cross-validation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from heads._base import Head, HeadError, Interval, balanced_accuracy, check_training_data
from heads._logreg import LogRegHead
from heads._sklearn import grouped_folds, smallest_class
from heads._svm import SVMHead

STATE_FILE = "ensemble.json"
MEMBER_HEADS = ("logreg", "svm", "dense")


class MemberList:
    """A comma-separated list of at least two distinct heads from ``MEMBER_HEADS``."""

    def __call__(self, value) -> bool:
        if not isinstance(value, str):
            return False
        names = [n.strip() for n in value.split(",")]
        return len(names) >= 2 and len(set(names)) == len(names) and set(names) <= set(MEMBER_HEADS)

    def __str__(self) -> str:
        return f"two or more of {', '.join(MEMBER_HEADS)}, comma-separated"


class EnsembleHead(Head):
    """Average the class probabilities of the best subset of tuned ``members``.

    Each member is fitted (tuned) on every training row as it would be on its own, or taken as
    given (``fit(..., fitted={name: head})``, as ``compare`` does, so no member is fitted twice).
    Then every member is refitted with its tuned choices (no new search, the dense head for the
    epochs it chose) on ``cv_folds`` folds of the training rows grouped by source image, and
    predicts the held-out fold: every non-empty subset of members is scored by the balanced
    accuracy (``heads._base.balanced_accuracy``) of its averaged out-of-fold probabilities (ties:
    lower log loss, then more members), and the best subset votes. The validation split is never
    used. ``chosen_`` names the voters, ``cv_scores_`` holds every subset's scores and ``cv_score_``
    the voters' balanced accuracy; ``selection_note_`` says when too few images per class left no
    folds (then every member votes).

    Parameters
    ----------
    members : str, comma-separated heads to vote (two or more of logreg, svm, dense).
    member_params : dict or None, head name -> parameters for that member.
    search_space : dict or None, head name -> its search space (``default_search_space``).
    cv_folds : int, folds of the selection.
    seed : int, seeds the folds.
    """

    name = "ensemble"
    # Each scikit-learn member searched over its own space (compare passes the members it has
    # already fitted, so they are not searched again).
    default_search_space = {"logreg": LogRegHead.default_search_space, "svm": SVMHead.default_search_space}
    _parameter_constraints = {
        "members": [MemberList()],
        "member_params": [None, dict],
        "search_space": [None, dict],
        "cv_folds": [Interval(int, 2)],
        "seed": [Interval(int, 0)],
    }

    def __init__(self, *, members: str = "logreg,svm,dense", member_params: dict | None = None,
                 search_space: dict | None = None, cv_folds: int = 3, seed: int = 0):
        self.members = members
        self.member_params = member_params
        self.search_space = search_space
        self.cv_folds = cv_folds
        self.seed = seed

    def member_names(self) -> list[str]:
        return [n.strip() for n in self.members.split(",")]

    def create_member(self, name: str) -> Head:
        """The member ``name`` as this ensemble fits it: its parameters and search space."""
        from heads import create_head
        params = dict((self.member_params or {}).get(name, {}))
        if self.search_space and self.search_space.get(name) and "search_space" not in params:
            params["search_space"] = self.search_space[name]
        return create_head(name, **params)

    def fit(self, X, y, groups=None, fitted: dict[str, Head] | None = None) -> "EnsembleHead":
        """``fitted``: members already fitted on exactly these rows, used as they are."""
        self._validate_params()
        X, y = check_training_data(X, y)
        X = np.asarray(X, dtype=np.float32)
        self.classes_ = np.unique(y)
        self.feature_shape_ = tuple(X.shape[1:])
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        names = self.member_names()
        members, self.reused_ = {}, []
        for name in names:
            if fitted and name in fitted:
                if not np.array_equal(fitted[name].classes_, self.classes_):
                    raise HeadError(f"The fitted {name} head given to the ensemble has other classes.")
                members[name], self.reused_ = fitted[name], [*self.reused_, name]
            else:
                members[name] = self.create_member(name).fit(X, y, groups=groups)
        self.chosen_, self.cv_scores_, self.selection_note_ = self._select(X, y, groups, members)
        self.members_ = {name: members[name] for name in self.chosen_}
        return self

    def fit_like(self, X, y, groups=None, fitted: dict[str, Head] | None = None) -> "EnsembleHead":
        """A new ensemble with this one's voters and selection, each voter refitted on ``X``, ``y``
        with its tuned choices (its own ``fit_like``), or taken from ``fitted`` (voters already
        refitted so on exactly these rows); nothing is searched or selected again."""
        self._check_fitted()
        fitted = fitted or {}
        head = type(self)(**self.get_params())
        X, y = check_training_data(X, y)
        head.classes_, head.feature_shape_ = np.unique(y), tuple(X.shape[1:])
        head.chosen_, head.cv_scores_, head.selection_note_ = list(self.chosen_), self.cv_scores_, self.selection_note_
        head.members_ = {name: fitted[name] if name in fitted else member.fit_like(X, y, groups)
                         for name, member in self.members_.items()}
        head.reused_ = [name for name in head.members_ if name in fitted]
        return head

    @property
    def cv_score_(self) -> float | None:
        """The voters' out-of-fold balanced accuracy on the training rows (None when the selection was
        skipped)."""
        return self.cv_scores_["+".join(self.chosen_)]["balanced_accuracy"] if self.cv_scores_ else None

    def _select(self, X, y, groups, members: dict[str, Head]) -> tuple[list[str], dict, str | None]:
        """(voters, every subset's out-of-fold score, note)."""
        names = list(members)
        label, images = smallest_class(y, groups)
        folds = min(self.cv_folds, images)
        if folds < 2:
            return names, {}, (f"selection skipped: class {label!r} has {images} training image; "
                               "every member votes")
        out_of_fold = {name: np.zeros((len(y), len(self.classes_))) for name in names}
        for train, test in grouped_folds(y, groups, folds, self.seed):
            for name in names:
                copy = members[name].fit_like(X[train], y[train], groups[train])
                columns = np.searchsorted(self.classes_, copy.classes_)
                out_of_fold[name][np.ix_(test, columns)] = copy.predict_proba(X[test])
        y_index = np.searchsorted(self.classes_, y)
        scores = {}
        for size in range(1, len(names) + 1):
            for subset in itertools.combinations(names, size):
                proba = np.mean([out_of_fold[n] for n in subset], axis=0)
                picked = np.clip(proba[np.arange(len(y)), y_index], 1e-15, 1)
                predicted = proba.argmax(axis=1)
                scores["+".join(subset)] = {"balanced_accuracy": balanced_accuracy(y_index, predicted),
                                            "accuracy": float((predicted == y_index).mean()),
                                            "log_loss": float(-np.log(picked).mean())}
        best = max(scores, key=lambda k: (scores[k]["balanced_accuracy"], -scores[k]["log_loss"], k.count("+")))
        note = f"selection used {folds} folds, not {self.cv_folds}: class {label!r} has {images} training images" \
            if folds < self.cv_folds else None
        return best.split("+"), scores, note

    def predict_proba(self, X) -> np.ndarray:
        """Shape (n_samples, n_classes): the voters' probabilities averaged."""
        X = self._check_features(X)
        total = np.zeros((len(X), len(self.classes_)))
        for member in self.members_.values():
            total[:, np.searchsorted(self.classes_, member.classes_)] += member.predict_proba(X)
        return total / len(self.members_)

    def save(self, folder: Path) -> None:
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, member in self.members_.items():
            member.save(folder / name)
        self._write_state(folder / STATE_FILE, chosen=self.chosen_, cv_scores=self.cv_scores_,
                          selection_note=self.selection_note_, reused=self.reused_)

    @classmethod
    def load(cls, folder: Path) -> "EnsembleHead":
        from heads import head_class
        folder = Path(folder)
        head, state = cls._read_state(folder / STATE_FILE)
        head.chosen_, head.cv_scores_ = state["chosen"], state["cv_scores"]
        head.selection_note_, head.reused_ = state["selection_note"], state["reused"]
        head.members_ = {name: head_class(name).load(folder / name) for name in head.chosen_}
        return head
