"""A small Keras network trained on the cached features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from heads._base import Flag, Head, Interval, Options, check_columns, check_training_data, selected_ranges
from heads._training import EpochTrainer, holdout_split

MODEL_FILE = "model.keras"
STATE_FILE = "head.json"


@dataclass
class _Network:
    """One of a dense head's networks, as fitted: the kept model and how it came to be."""
    model: keras.Model
    columns: str | None
    epochs: int
    refitted: bool
    cv_score: float | None  # its holdout balanced accuracy
    holdout_scores: dict  # columns candidate -> holdout balanced accuracy and loss
    rows: set  # the training rows it was trained on


class DenseHead(Head):
    """``networks`` of: flatten, clip to the training range, standardise, Dropout, Dense + Dropout,
    softmax; Adam with early stopping; their probabilities averaged.

    Each feature is first mapped from its training range to [-1, 1] (a ``Normalization``) and
    clipped there (``hard_tanh``), then standardised, so a feature constant in training (a VGG16
    channel zero on every image) or far outside its range cannot push the network to certainty;
    a range or variance too small to divide by is taken as 1. Dropout on the standardised input
    (``input_dropout``) keeps the hidden layer from leaning on a few of the thousands of feature
    columns, which matters most where few photos meet many columns. On a few hundred photos one
    network's accuracy moves by a point or two with its seed alone, so ``networks`` are trained
    apart, seeded ``seed``, ``seed + 1``, ... (each its own holdout, starting weights, batch order
    and epochs), and their probabilities averaged. Built-in layers only, so the saved ``.keras``
    file loads with plain Keras.

    Early stopping watches the loss on ``holdout`` of the training rows, held out
    by group when ``groups`` is given (all augmented passes of one image together),
    so the validation split is never used for fitting. One group of every class always
    stays in training; when none is left to hold out (one image per class), early stopping
    watches the training loss instead. With ``refit`` (the default) the held-out rows are
    not lost: once early stopping has chosen the number of epochs (``epochs_``, one a network), a
    fresh network (same seed, input scaling from every row) is trained on every training row for
    that many epochs, and that one is kept; without it the early-stopped network is kept.
    ``rows_seen_`` counts the distinct training rows the kept networks were trained on.

    With ``column_groups`` (group name -> [start, stop) of the columns, which a ``blocks`` store
    names), ``columns`` ("+"-joined groups) narrows the input to those groups, inside the network
    (built-in cropping layers, so the saved model still takes whole rows). A ``search_space``
    holding ``columns`` early-stops the first network once per candidate on its holdout and keeps
    the one with the best holdout balanced accuracy (``heads._base.balanced_accuracy``; ties: lower
    loss): ``columns_``, which the other networks take. ``cv_score_`` is the networks' mean holdout
    balanced accuracy (None without a holdout).
    Signed square root normalisation is not offered here: no built-in Keras layer computes it, and
    the model must export as one.

    Parameters
    ----------
    units : int, width of the hidden layer.
    dropout : float, dropout rate after it.
    input_dropout : float, dropout rate on the standardised input columns.
    networks : int, networks trained apart and averaged.
    learning_rate : float, Adam's step size.
    epochs : int, most epochs; early stopping usually ends sooner.
    batch_size : int
    patience : int, epochs without improvement before stopping.
    holdout : float, fraction of training rows (or groups) used for early stopping.
    class_weight : str or dict, ``balanced`` (each class weighs the same in the loss, in training and
        on the holdout, however many rows it has), ``none`` (every row alike) or class -> weight.
    refit : bool, train again on every training row for the chosen number of epochs.
    column_groups : dict or None, group name -> [start, stop) of its feature columns.
    columns : str or None, "+"-joined groups to use; None: every column.
    search_space : dict or None, ``{"columns": [...]}``: candidates chosen on the holdout.
    seed : int, seeds the first network's weights, shuffling and holdout (``seed + 1`` the second's...).
    """

    name = "dense"
    _parameter_constraints = {
        "units": [Interval(int, 1)],
        "dropout": [Interval(float, 0, 1, closed="left")],
        "input_dropout": [Interval(float, 0, 1, closed="left")],
        "networks": [Interval(int, 1)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "epochs": [Interval(int, 1)],
        "batch_size": [Interval(int, 1)],
        "patience": [Interval(int, 0)],
        "holdout": [Interval(float, 0, 1, closed="neither")],
        "class_weight": [Options("none", "balanced"), dict],
        "refit": [Flag()],
        "column_groups": [None, dict],
        "columns": [None, str],
        "search_space": [None, dict],
        "seed": [Interval(int, 0)],
    }

    def __init__(self, *, units: int = 256, dropout: float = 0.5, input_dropout: float = 0.5, networks: int = 3,
                 learning_rate: float = 1e-3, epochs: int = 100, batch_size: int = 64,
                 patience: int = 10, holdout: float = 0.2, class_weight: str | dict = "balanced",
                 refit: bool = True,
                 column_groups: dict | None = None, columns: str | None = None,
                 search_space: dict | None = None, seed: int = 0):
        self.units = units
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.networks = networks
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.holdout = holdout
        self.class_weight = class_weight
        self.refit = refit
        self.column_groups = column_groups
        self.columns = columns
        self.search_space = search_space
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Keras on CPU rounds a row's float32 probabilities by its place in the batch (measured:
        # up to 6e-8 apart when rows are reordered), so predictions are not bit-identical per row.
        tags.non_deterministic = True
        return tags

    def fit(self, X, y, groups=None) -> "DenseHead":
        """``X`` may be an array or a store's memory-mapped ``ShardedFeatures``: rows are
        gathered at most ``CHUNK_BYTES`` at a time (``EpochTrainer``), so the features need not
        fit in memory."""
        self._validate_params()
        X, y = check_training_data(X, y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self.feature_shape_ = tuple(X.shape[1:])
        check_columns(self, int(np.prod(self.feature_shape_)))
        first = self._fit_network(X, y_index, groups, self.seed,
                                  (self.search_space or {}).get("columns") or [self.columns])
        networks = [first] + [self._fit_network(X, y_index, groups, self.seed + index, [first.columns])
                              for index in range(1, self.networks)]
        self.columns_, self.holdout_scores_ = first.columns, first.holdout_scores
        self.epochs_ = [network.epochs for network in networks]
        self.refitted_ = first.refitted
        self.cv_score_ = None if first.cv_score is None else float(np.mean([n.cv_score for n in networks]))
        self._keep([network.model for network in networks], [network.rows for network in networks])
        return self

    def _keep(self, models: list[keras.Model], rows: list[set]) -> None:
        """Keep ``models`` as one averaged model; ``rows``: the training rows each was trained on."""
        self.model_ = averaged(models)
        self.rows_seen_ = len(set().union(*rows))

    def _fit_network(self, X, y_index: np.ndarray, groups, seed: int, candidates: list) -> "_Network":
        """One network seeded with ``seed`` (its holdout, weights and batch order), early-stopped on
        its holdout once per ``candidates`` columns, the best kept; with ``refit``, a fresh one
        trained on every row for as many epochs."""
        fit_rows, stop_rows = holdout_split(y_index, groups, self.holdout, seed)
        statistics = _statistics(X, fit_rows)
        if not len(stop_rows):
            candidates = candidates[:1]
        scores, best = {}, None
        for columns in candidates:  # the same holdout, seed and epochs for each
            model, epochs, score = self._early_stopped(X, y_index, fit_rows, stop_rows, statistics, columns, seed)
            scores[str(columns)] = score
            if best is None or ((score["balanced_accuracy"], -score["loss"])
                                > (best[3]["balanced_accuracy"], -best[3]["loss"])):
                best = (columns, model, epochs, score)
        columns, model, epochs, score = best
        refitted = bool(self.refit and len(stop_rows))
        rows = set(fit_rows.tolist())
        if refitted:  # the same recipe on every row, for the epochs early stopping chose
            model, rows = self._train_on_every_row(X, y_index, epochs, columns, seed)
        return _Network(model, columns, epochs, refitted, score["balanced_accuracy"] if len(stop_rows) else None,
                        scores, rows)

    def _early_stopped(self, X, y_index, fit_rows, stop_rows, statistics, columns, seed: int):
        """(network, the epochs it was kept at, its holdout balanced accuracy and loss) early-stopped on
        ``stop_rows`` (on the training loss when there are none), with input ``columns``."""
        keras.utils.set_random_seed(seed)
        model = self._build(statistics, len(self.classes_), columns)
        trainer = EpochTrainer(model, X, y_index, self.batch_size, seed, self._class_weights(y_index, fit_rows))
        epochs, loss, accuracy = trainer.early_stopped(fit_rows, stop_rows, self.epochs, self.patience)
        return model, epochs, {"balanced_accuracy": accuracy or 0.0, "loss": loss}

    def _train_on_every_row(self, X, y_index: np.ndarray, epochs: int, columns, seed: int) -> tuple[keras.Model, set]:
        """A fresh network seeded with ``seed``, trained on every row for ``epochs``; the rows it drew."""
        every = np.arange(len(y_index))
        keras.utils.set_random_seed(seed)
        model = self._build(_statistics(X, every), len(self.classes_), columns)
        trainer = EpochTrainer(model, X, y_index, self.batch_size, seed, self._class_weights(y_index, every))
        for _ in range(epochs):
            trainer.epoch(every)
        return model, trainer.served

    def _class_weights(self, y_index: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        """Each class's weight in the loss on ``rows`` (each class has some, ``holdout_split``): with
        ``class_weight="balanced"``, scikit-learn's (rows over classes times the class's rows), as
        logreg's and the SVM's, so each class weighs alike; a dict's (1 for a class it omits); None
        for ``none``."""
        if self.class_weight == "none":
            return None
        if isinstance(self.class_weight, dict):
            return np.array([self.class_weight.get(label, 1.0) for label in self.classes_.tolist()])
        return compute_class_weight("balanced", classes=np.arange(len(self.classes_)), y=y_index[rows])

    def fit_like(self, X, y, groups=None) -> "DenseHead":
        """A new head with this fitted head's parameters, its networks trained on every row of ``X``,
        ``y`` for the epochs this one's chose, with no early stopping (what the ensemble's
        cross-validation refits in each fold)."""
        self._check_fitted()
        head = type(self)(**{**self.get_params(), "columns": self.columns_, "search_space": None})
        head._validate_params()
        X, y = check_training_data(X, y)
        head.classes_, y_index = np.unique(y, return_inverse=True)
        head.feature_shape_ = tuple(X.shape[1:])
        head.epochs_, head.refitted_, head.columns_ = list(self.epochs_), True, self.columns_
        head.cv_score_ = None  # no holdout: as a scikit-learn head's fit_like
        trained = [head._train_on_every_row(X, y_index, epochs, self.columns_, self.seed + index)
                   for index, epochs in enumerate(self.epochs_)]
        head._keep([model for model, _ in trained], [rows for _, rows in trained])
        return head

    def _build(self, statistics: tuple[np.ndarray, ...], n_classes: int, columns: str | None) -> keras.Model:
        """The network on ``columns`` of the flattened input, scaled by the training ``statistics``
        (``_statistics``' per-column minimum, maximum, mean and variance of every column)."""
        n_features = int(np.prod(self.feature_shape_))
        ranges = selected_ranges(self.column_groups, columns, n_features)
        kept = np.concatenate([np.arange(start, stop) for start, stop in ranges])
        centre, half_range, mean, variance = input_scaling(*(part[kept] for part in statistics))
        model = keras.Sequential([
            keras.Input(shape=self.feature_shape_),
            keras.layers.Flatten(),
            *column_model(ranges, n_features),
            keras.layers.Normalization(mean=centre, variance=half_range ** 2),  # training range -> [-1, 1]
            keras.layers.Activation("hard_tanh"),  # beyond it: clipped
            keras.layers.Normalization(mean=mean, variance=variance),
            keras.layers.Dropout(self.input_dropout),
            keras.layers.Dense(self.units, activation="relu"),
            keras.layers.Dropout(self.dropout),
            keras.layers.Dense(n_classes, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                      loss="sparse_categorical_crossentropy")
        return model

    def predict_proba(self, X) -> np.ndarray:
        """Shape (n_samples, n_classes), columns in ``classes_`` order."""
        X = self._check_features(X)
        return np.asarray(self.model_.predict(X, batch_size=1024, verbose=0), dtype=np.float64)

    def save(self, folder: Path) -> None:
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model_.save(folder / MODEL_FILE)
        self._write_state(folder / STATE_FILE, epochs=self.epochs_, refitted=self.refitted_,
                          rows_seen=self.rows_seen_, columns=self.columns_, cv_score=self.cv_score_)

    @classmethod
    def load(cls, folder: Path) -> "DenseHead":
        folder = Path(folder)
        head, state = cls._read_state(folder / STATE_FILE)
        epochs = state["epochs"]  # one number, written before heads had several networks
        head.epochs_ = epochs if isinstance(epochs, list) else [epochs]
        head.networks = len(head.epochs_)
        head.refitted_, head.rows_seen_ = state.get("refitted", False), state.get("rows_seen")
        head.columns_, head.cv_score_ = state.get("columns"), state.get("cv_score")
        head.model_ = keras.saving.load_model(folder / MODEL_FILE)
        return head


def averaged(networks: list[keras.Model]) -> keras.Model:
    """One model whose probabilities are the mean of ``networks``' (the network itself when alone)."""
    if len(networks) == 1:
        return networks[0]
    rows = keras.Input(shape=networks[0].input_shape[1:])
    return keras.Model(rows, keras.layers.Average(name="averaged")([network(rows) for network in networks]),
                       name="dense_networks")


def column_model(ranges: list[tuple[int, int]], n_features: int) -> list[keras.Model]:
    """The column ``ranges`` of flat rows side by side, as a model of built-in Keras layers
    (cropping), in a list to splice into a ``Sequential``; empty when they are every column."""
    if ranges == [(0, n_features)]:
        return []
    rows = keras.Input(shape=(n_features,))
    reshaped = keras.layers.Reshape((n_features, 1))(rows)
    kept = keras.layers.Concatenate(axis=1)(
        [keras.layers.Cropping1D((start, n_features - stop))(reshaped) for start, stop in ranges])
    return [keras.Model(rows, keras.layers.Flatten()(kept), name="columns")]


def _statistics(X, rows: np.ndarray, block: int = 4096) -> tuple[np.ndarray, ...]:
    """Per-feature minimum, maximum, mean and variance of ``X[rows]`` (flattened), read
    ``block`` rows at a time."""
    total = squares = 0.0
    low, high = np.inf, -np.inf
    for start in range(0, len(rows), block):
        part = X[np.sort(rows[start:start + block])].reshape(-1, int(np.prod(X.shape[1:]))).astype(np.float64)
        total = total + part.sum(axis=0)
        squares = squares + (part ** 2).sum(axis=0)
        low, high = np.minimum(low, part.min(axis=0)), np.maximum(high, part.max(axis=0))
    mean = total / len(rows)
    return low, high, mean, np.maximum(squares / len(rows) - mean ** 2, 0.0)


def input_scaling(low, high, mean, variance, tiny: float = 1e-6) -> tuple[np.ndarray, ...]:
    """The two ``Normalization`` layers' settings: (centre, half range) mapping each feature's
    training range to [-1, 1], then (mean, variance) of the mapped training values.

    A half range below ``tiny`` times the largest one (a constant feature) is taken as 1, and
    so is a mapped variance below ``tiny`` squared (the mapped values lie in [-1, 1], so that
    threshold is relative): nothing is divided by a near-zero spread.
    """
    centre, half = (low + high) / 2, (high - low) / 2
    half = np.where(half > tiny * half.max(initial=0.0), half, 1.0)
    mapped_mean, mapped_variance = (mean - centre) / half, variance / half ** 2
    return centre, half, mapped_mean, np.where(mapped_variance > tiny ** 2, mapped_variance, 1.0)
