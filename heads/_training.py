"""What the Keras heads share: a grouped early-stopping holdout, batches gathered on demand and a
training loop without Keras' per-epoch overhead."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from heads._base import balanced_accuracy


def holdout_split(labels: np.ndarray, groups, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, early-stopping rows): about ``holdout`` of the groups, drawn at random but
    never the last group of a class, so every class is trained on; maybe no stopping rows."""
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.unique(groups))
    n_stop = max(1, int(round(holdout * len(order))))
    position = np.searchsorted(np.sort(order), groups)  # each row's group, as an index
    rank = np.argsort(order)[position]  # each row's group's place in the random order
    kept = np.full(labels.max() + 1, len(order))  # per class, its first group in that order
    np.minimum.at(kept, labels, rank)
    candidates = np.setdiff1d(np.arange(len(order)), kept)  # in random order
    stop = np.isin(rank, candidates[:n_stop])
    return np.flatnonzero(~stop), np.flatnonzero(stop)


class RowBatches(keras.utils.PyDataset):
    """Batches of ``X[rows]`` and their labels, gathered on demand; reshuffled each epoch when seeded."""

    def __init__(self, X, labels: np.ndarray, rows: np.ndarray, batch_size: int, seed: int | None = None):
        super().__init__()
        self.X, self.labels, self.batch_size = X, labels, batch_size
        self.rows = np.array(rows)
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, index: int):
        rows = self.rows[index * self.batch_size:(index + 1) * self.batch_size]
        return self.X[rows], self.labels[rows]

    def on_epoch_end(self) -> None:
        if self.rng is not None:
            self.rng.shuffle(self.rows)


CHUNK_BYTES = 256 * 2**20  # the most float32 feature bytes an epoch gathers into memory at once


class EpochTrainer:
    """Trains a compiled softmax classifier ``model`` with its optimizer and sparse categorical
    crossentropy on rows of ``X`` (an array or a store's memory-mapped ``ShardedFeatures``),
    reshuffled every epoch by ``seed``, and scores it on others.

    An epoch is Keras' ``fit`` over a dataset of shuffled rows: batches of ``batch_size`` rows
    in random order, the one short batch (when the rows do not divide) at a random place among
    them rather than always last, and the same step as ``fit``'s (``apply_gradients`` on the
    batch's mean loss, the dropout seeds drawn in the same sequence).

    Keras' ``fit`` spends about 0.25 s an epoch outside the arithmetic (two tf.data iterators,
    a validation ``evaluate``, callbacks), more than a small head's training itself on a
    thousand rows. Here an epoch's rows are gathered a chunk at a time (``CHUNK_BYTES`` at most:
    one chunk on most stores), and one traced function runs every batch of a chunk, so the
    features need not fit in memory and an epoch costs about its arithmetic.
    ``served`` holds the distinct rows trained on so far. ``class_weights`` (one per class; None:
    every row alike) weigh each row's loss by its class, in training and in ``score``.
    """

    def __init__(self, model: keras.Model, X, labels: np.ndarray, batch_size: int, seed: int,
                 class_weights: np.ndarray | None = None):
        self.model, self.X, self.labels, self.batch_size = model, X, labels, batch_size
        self.class_weights = np.ones(int(labels.max()) + 1) if class_weights is None else np.asarray(class_weights)
        weights = tf.constant(self.class_weights, tf.float32)
        self.served: set[int] = set()
        self._rng = np.random.default_rng(seed)
        row_bytes = 4 * int(np.prod(X.shape[1:]))
        self._chunk_rows = max(1, CHUNK_BYTES // (row_bytes * batch_size)) * batch_size
        model.optimizer.build(model.trainable_variables)
        rows_spec = tf.TensorSpec((None, *X.shape[1:]), tf.float32)
        integers = tf.TensorSpec((None,), tf.int64)
        self._train_chunk = tf.function(lambda x, y, bounds: self._train_batches(x, y, bounds, weights),
                                        input_signature=[rows_spec, integers, integers])
        self._predict_chunk = tf.function(lambda x: model(x, training=False), input_signature=[rows_spec])

    def _train_batches(self, x, y, bounds, weights):
        """One optimizer step per batch of ``x``, rows ``bounds[i]`` to ``bounds[i + 1]``, in
        order, each row's loss weighed by its class's ``weights``; the sum of the batches' losses,
        each its mean times its rows."""
        total = tf.constant(0.0)
        for batch in tf.range(tf.shape(bounds)[0] - 1):
            rows, labels = x[bounds[batch]:bounds[batch + 1]], y[bounds[batch]:bounds[batch + 1]]
            with tf.GradientTape() as tape:
                predictions = self.model(rows, training=True)
                loss = tf.reduce_mean(tf.gather(weights, labels)
                                      * keras.losses.sparse_categorical_crossentropy(labels, predictions))
            variables = self.model.trainable_variables
            self.model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            total += loss * tf.cast(tf.shape(rows)[0], tf.float32)
        return total

    def _features(self, rows: np.ndarray) -> np.ndarray:
        """``X[rows]`` in memory, as float32."""
        return np.asarray(self.X[rows], dtype=np.float32)

    def _batch_bounds(self, n_rows: int) -> np.ndarray:
        """Where each batch of an epoch over ``n_rows`` starts, then ``n_rows``: full batches and
        the short one in random order."""
        sizes = np.full(-(-n_rows // self.batch_size), self.batch_size)
        sizes[-1] = n_rows - self.batch_size * (len(sizes) - 1)
        self._rng.shuffle(sizes)
        return np.concatenate([[0], np.cumsum(sizes)])

    def epoch(self, rows: np.ndarray) -> float:
        """Train one epoch over ``rows`` in a new random order; its mean training loss."""
        order, bounds = self._rng.permutation(rows), self._batch_bounds(len(rows))
        per_chunk = self._chunk_rows // self.batch_size  # whole batches a chunk
        total = 0.0
        for first in range(0, len(bounds) - 1, per_chunk):
            chunk_bounds = bounds[first:first + per_chunk + 1]
            chunk = order[chunk_bounds[0]:chunk_bounds[-1]]
            total += float(self._train_chunk(self._features(chunk), self.labels[chunk].astype(np.int64),
                                             chunk_bounds - chunk_bounds[0]))
            self.served.update(chunk.tolist())
        return total / len(rows)

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """The model's class probabilities for ``rows``, shape (len(rows), n_classes)."""
        return np.concatenate([self._predict_chunk(self._features(rows[start:start + self._chunk_rows])).numpy()
                               for start in range(0, len(rows), self._chunk_rows)])

    def score(self, rows: np.ndarray) -> tuple[float, float]:
        """(crossentropy, balanced accuracy) on ``rows``, each probability clipped at 1e-7, the
        crossentropy's mean weighed by the rows' class weights."""
        proba, labels = self.probabilities(rows), self.labels[rows]
        picked = np.clip(proba[np.arange(len(rows)), labels], 1e-7, 1.0)
        loss = np.average(-np.log(picked), weights=self.class_weights[labels])
        return float(loss), balanced_accuracy(labels, proba.argmax(axis=1))

    def early_stopped(self, fit_rows: np.ndarray, stop_rows: np.ndarray, epochs: int,
                      patience: int) -> tuple[int, float, float | None]:
        """Train on ``fit_rows`` for at most ``epochs``, stopping once the loss on ``stop_rows`` (the
        training loss when there are none) has not fallen for ``patience`` epochs, and keep the
        weights of its lowest, as Keras' ``EarlyStopping(restore_best_weights=True)`` does.
        Returns (the epochs of the kept weights, that loss, their balanced accuracy on ``stop_rows``,
        None when there are none)."""
        best_epoch, best_loss, best_accuracy, best_weights = epochs, np.inf, None, None
        for epoch in range(1, epochs + 1):
            loss, accuracy = self.epoch(fit_rows), None
            if len(stop_rows):
                loss, accuracy = self.score(stop_rows)
            if loss < best_loss:  # a NaN loss is never the best
                best_epoch, best_loss, best_accuracy, best_weights = epoch, loss, accuracy, self.model.get_weights()
            elif epoch - best_epoch >= patience:
                break
        if best_weights is not None:
            self.model.set_weights(best_weights)
        return best_epoch, best_loss, best_accuracy
