"""What the Keras heads share: a grouped early-stopping holdout and batches gathered on demand."""

from __future__ import annotations

import keras
import numpy as np


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
        self.served: set[int] = set()  # distinct rows handed out so far
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, index: int):
        rows = self.rows[index * self.batch_size:(index + 1) * self.batch_size]
        self.served.update(rows.tolist())
        return self.X[rows], self.labels[rows]

    def on_epoch_end(self) -> None:
        if self.rng is not None:
            self.rng.shuffle(self.rows)
