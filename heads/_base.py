"""What every head shares: the error type, parameter and input checks, ``--param`` parsing."""

from __future__ import annotations

import inspect
import json
import math
import numbers
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y, column_or_1d


class HeadError(ValueError):
    """A head was asked for something it cannot do, stated with the fix (a ``ValueError``, as
    scikit-learn raises for bad arguments)."""


def _is_kind(value, kind: type) -> bool:
    """``value`` is a ``kind``; never a bool, an int counts as a float."""
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, {int: numbers.Integral, float: numbers.Real}.get(kind, kind))


class Interval:
    """Finite ints or floats (``kind``) from ``low`` to ``high`` (None: unbounded);
    ``closed`` is "both", "left", "right" or "neither": which ends belong."""

    def __init__(self, kind: type, low=None, high=None, closed: str = "both"):
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def __call__(self, value) -> bool:
        if not _is_kind(value, self.kind) or not math.isfinite(value):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        return ((self.low is None or value > self.low or (left and value == self.low))
                and (self.high is None or value < self.high or (right and value == self.high)))

    def __str__(self) -> str:
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and self.high is not None:  # a bounded float is finite anyway
            return (f"{'an int' if self.kind is int else 'a float'} in {'[' if left else '('}"
                    f"{self.low}, {self.high}{']' if right else ')'}")
        kind = "an int" if self.kind is int else "a finite float"
        if self.low is not None:
            return f"{kind} {'>=' if left else '>'} {self.low}"
        if self.high is not None:
            return f"{kind} {'<=' if right else '<'} {self.high}"
        return kind


class Options:
    """Exactly one of ``values`` (of the same kind: -1.0 is not the int -1)."""

    def __init__(self, *values):
        self.values = values

    def __call__(self, value) -> bool:
        return any(_is_kind(value, type(v)) and value == v for v in self.values)

    def __str__(self) -> str:
        listed = ", ".join(map(repr, self.values))
        return listed if len(self.values) == 1 else f"one of {listed}"


class Flag:
    """True or False (numpy's bools too); never 0 or 1."""

    def __call__(self, value) -> bool:
        return isinstance(value, (bool, np.bool_))

    def __str__(self) -> str:
        return "a bool"


def _satisfies(rule, value) -> bool:
    """A rule is None (the value None), a type (an instance of it), an Interval or Options."""
    if rule is None:
        return value is None
    return _is_kind(value, rule) if isinstance(rule, type) else rule(value)


def _describe(rule) -> str:
    if rule is None:
        return "None"
    return f"a {rule.__name__}" if isinstance(rule, type) else str(rule)


class Head(ClassifierMixin, BaseEstimator):
    """Estimator contract: ``fit(X, y, groups=None)``, ``predict_proba``, ``save`` / ``load``.

    A scikit-learn classifier: ``clone``, ``get_params``/``set_params``, ``score``,
    ``cross_val_score`` and ``Pipeline`` work as with any estimator. ``__init__`` only stores
    keyword arguments; learned state ends in ``_`` and is set by ``fit``.
    ``_parameter_constraints`` maps every ``__init__`` parameter to the rules it may satisfy
    (any one will do); ``fit`` and ``parse_params`` check them with ``_validate_params``.
    """

    name = "head"
    _parameter_constraints: dict[str, list] = {}
    # What `compare` and `head` search by default (cross-validated on training rows); empty: none.
    default_search_space: dict[str, list] = {}

    @classmethod
    def search_space_without(cls, given: dict) -> dict:
        """The default search space less the parameters ``given`` explicitly (those are not searched)."""
        return {name: values for name, values in cls.default_search_space.items() if name not in given}

    def _validate_params(self) -> None:
        """Raise a one-line ``HeadError`` naming the head, parameter, rule and value on the first
        parameter that satisfies none of its rules."""
        for name, value in self.get_params().items():
            if name not in self._parameter_constraints:
                raise HeadError(f"{type(self).__name__} declares no constraint for parameter {name!r}.")
            rules = self._parameter_constraints[name]
            if not any(_satisfies(rule, value) for rule in rules):
                raise HeadError(f"{self.name} parameter {name!r} must be "
                                f"{' or '.join(map(_describe, rules))}. Received: {value!r}")

    def predict(self, X) -> np.ndarray:
        """Shape (n_samples,): the most probable class label of each row."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "classes_")

    def _check_fitted(self) -> None:
        """Raise scikit-learn's ``NotFittedError`` unless ``fit`` (or ``load``) has run."""
        check_is_fitted(self, msg=f"This {type(self).__name__} is not fitted yet; call fit(X, y) first.")

    @property
    def n_features_in_(self) -> int:
        """Number of features seen in ``fit``: the feature shape flattened."""
        return int(np.prod(self.feature_shape_))

    def _write_state(self, path: Path, **learned) -> None:
        """Write ``path``: JSON of the parameters, classes, feature shape and ``learned`` state."""
        state = {"params": self.get_params(), "classes": self.classes_.tolist(),
                 "feature_shape": list(self.feature_shape_), **learned}
        Path(path).write_text(json.dumps(state, indent=1))

    @classmethod
    def _read_state(cls, path: Path) -> tuple["Head", dict]:
        """A head with the parameters, classes and feature shape ``_write_state`` wrote, and the state."""
        state = json.loads(Path(path).read_text())
        head = cls(**state["params"])
        head.classes_ = np.asarray(state["classes"])
        head.feature_shape_ = tuple(state["feature_shape"])
        return head, state

    def _check_features(self, X) -> np.ndarray:
        """``X`` as float32 (n_samples, ...), checked against the features seen in ``fit``."""
        self._check_fitted()
        X = check_array(X, dtype=np.float32, allow_nd=True, estimator=self)
        if X.shape[1:] != tuple(self.feature_shape_):
            raise HeadError(f"X has {int(np.prod(X.shape[1:]))} features, but {type(self).__name__} is "
                            f"expecting {self.n_features_in_} features as input: it was fitted on features "
                            f"of shape {tuple(self.feature_shape_)}. Received: {X.shape[1:]}")
        return X


def balanced_accuracy(labels, predicted) -> float:
    """The mean recall of the classes in ``labels``: what every head's search, holdout and vote is
    scored by, and ``compare`` chooses by. Accuracy where the classes are the same size; where they
    are not, a head that never predicts a rare class loses that class's whole share, not its few
    rows. As scikit-learn's ``balanced_accuracy_score``, without its warning when ``predicted``
    holds a class ``labels`` lacks (a fold or holdout without some class)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    return float(np.mean([np.mean(predicted[labels == label] == label) for label in np.unique(labels)]))


def selected_ranges(column_groups: dict | None, columns: str | None, n_features: int) -> list[tuple[int, int]]:
    """The [start, stop) column ranges that ``columns`` ("+"-joined group names of
    ``column_groups``; None: every group) selects, in that order; every column when there are no
    groups."""
    if column_groups is None or columns is None:
        return [(0, n_features)]
    return [tuple(column_groups[name]) for name in columns.split("+")]


def check_columns(head: "Head", n_features: int) -> None:
    """Refuse ``columns`` (given or searched) naming a group ``column_groups`` lacks, or groups
    beyond the features' ``n_features`` columns."""
    groups = head.column_groups
    asked = [head.columns] + list((head.search_space or {}).get("columns", []))
    asked = [choice for choice in asked if choice is not None]
    if asked and groups is None:
        raise HeadError(f"{head.name} parameter 'columns' needs column_groups (a blocks store's). "
                        f"Received: {asked[0]!r}")
    unknown = [name for choice in asked for name in choice.split("+") if name not in groups]
    if unknown:
        raise HeadError(f"{head.name} parameter 'columns' names {unknown[0]!r}, not one of the column "
                        f"groups {', '.join(groups)}.")
    if groups and max(stop for _, stop in groups.values()) > n_features:
        raise HeadError(f"{head.name} parameter 'column_groups' reaches beyond the {n_features} feature "
                        f"columns. Received: {groups!r}")


def feature_blocks(X):
    """``X`` a block at a time: one per shard of a store's ``ShardedFeatures``, else whole."""
    return X.blocks() if hasattr(X, "blocks") else [X]


def check_training_data(X, y) -> tuple[np.ndarray, np.ndarray]:
    """Features as float32 (n_samples, ...) and class labels (n_samples,) of any kind (ints,
    strings), checked as scikit-learn checks them (``ValueError``s): finite, real, not sparse,
    not empty, one label per row, discrete labels of at least two classes.

    Memory-mapped store features (anything with ``blocks()``) are checked block by block
    and returned as they are, not loaded.
    """
    if y is None:
        raise HeadError("A head requires y to be passed, but the target y is None.")
    if hasattr(X, "blocks"):
        y = column_or_1d(y, warn=True)
        if X.ndim < 2 or len(X) != len(y):
            raise HeadError(f"Expected X of shape (n_samples, ...) and y of shape (n_samples,). "
                            f"Received: X {X.shape}, y {y.shape}")
        if not all(np.isfinite(block).all() for block in feature_blocks(X)):
            raise HeadError("Features contain NaN or infinity; the store is damaged. Run `verify`.")
    else:
        X, y = check_X_y(X, y, dtype=np.float32, allow_nd=True)
    check_classification_targets(y)
    if len(np.unique(y)) < 2:
        raise HeadError(f"Need at least two classes to fit a head; y holds one class: {np.unique(y).tolist()}")
    return X, y


def parse_params(head_class: type, pairs: list[str]) -> dict:
    """Turn ``["C=0.5", "units=128"]`` into typed keyword arguments for ``head_class``.

    Each value takes the type of the parameter's default, then must satisfy the head's
    ``_parameter_constraints``, so the CLI refuses a bad value before writing anything.
    """
    defaults = {name: p.default for name, p in inspect.signature(head_class.__init__).parameters.items()
                if name != "self"}
    params = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise HeadError(f"`param` takes name=value. Received: {pair!r}")
        if name not in defaults:
            raise HeadError(f"Unknown parameter {name!r} for head {head_class.name!r}; it takes "
                            f"{', '.join(sorted(defaults))}. Received: {pair!r}")
        text_default = defaults[name] is None and str in head_class._parameter_constraints.get(name, ())
        params[name] = text if text_default else _convert(name, text, defaults[name])  # e.g. columns
    head_class(**params)._validate_params()  # __init__ only stores them
    return params


def _convert(name: str, text: str, default):
    if not isinstance(default, (bool, int, float, str)):
        raise HeadError(f"Parameter {name!r} cannot be set with `param`; it comes from the head's "
                        "default_search_space.")
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        return type(default)(text)
    except ValueError:
        raise HeadError(f"Parameter {name!r} must be a {type(default).__name__}. "
                        f"Received: {text!r}") from None
