"""What every head shares: the error type, input checks and ``--param`` parsing."""

from __future__ import annotations

import inspect

import numpy as np


class HeadError(Exception):
    """A head was asked for something it cannot do, stated with the fix."""


class Head:
    """Estimator contract: ``fit(X, y, groups=None)``, ``predict_proba``, ``save`` / ``load``.

    ``__init__`` only stores keyword arguments; learned state ends in ``_`` and is set by ``fit``.
    """

    name = "head"

    def get_params(self) -> dict:
        return {p: getattr(self, p) for p in inspect.signature(type(self).__init__).parameters
                if p != "self"}

    def predict(self, X) -> np.ndarray:
        """Shape (n_samples,): the most probable class label of each row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise HeadError(f"This {type(self).__name__} is not fitted yet; call fit(X, y) first.")

    def _check_features(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if hasattr(self, "feature_shape_") and X.shape[1:] != self.feature_shape_:
            raise HeadError(f"{type(self).__name__} was fitted on features of shape "
                            f"{self.feature_shape_}. Received: {X.shape[1:]}")
        return X


def feature_blocks(X):
    """``X`` a block at a time: one per shard of a store's ``ShardedFeatures``, else whole."""
    return X.blocks() if hasattr(X, "blocks") else [X]


def check_training_data(X, y) -> tuple[np.ndarray, np.ndarray]:
    """Features as float32 (n_samples, ...) and labels as int (n_samples,), checked.

    Memory-mapped store features (anything with ``blocks()``) are checked block by block
    and returned as they are, not loaded.
    """
    if not hasattr(X, "blocks"):
        X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim < 2 or y.ndim != 1 or len(X) != len(y):
        raise HeadError(f"Expected X of shape (n_samples, ...) and y of shape (n_samples,). "
                        f"Received: X {X.shape}, y {y.shape}")
    if len(np.unique(y)) < 2:
        raise HeadError(f"Need at least two classes to fit a head. Received: {np.unique(y).tolist()}")
    if not all(np.isfinite(block).all() for block in feature_blocks(X)):
        raise HeadError("Features contain NaN or infinity; the store is damaged. Run `verify`.")
    return X, y


def parse_params(head_class: type, pairs: list[str]) -> dict:
    """Turn ``["C=0.5", "units=128"]`` into typed keyword arguments for ``head_class``.

    Each value takes the type of the parameter's default.
    """
    defaults = {name: p.default for name, p in inspect.signature(head_class.__init__).parameters.items()
                if name != "self"}
    params = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise HeadError(f"--param takes name=value. Received: {pair!r}")
        if name not in defaults:
            raise HeadError(f"Unknown parameter {name!r} for head {head_class.name!r}; it takes "
                            f"{', '.join(sorted(defaults))}. Received: {pair!r}")
        params[name] = _convert(name, text, defaults[name])
    return params


def _convert(name: str, text: str, default):
    if not isinstance(default, (bool, int, float, str)):
        raise HeadError(f"Parameter {name!r} cannot be set with --param; it comes from the config "
                        "(pipeline/config.py).")
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        return type(default)(text)
    except ValueError:
        raise HeadError(f"Parameter {name!r} must be a {type(default).__name__}. "
                        f"Received: {text!r}") from None
