"""VGG16's block 5 fine-tuned, with a softmax top, on cached block4_pool maps."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np

from heads._base import Flag, Head, HeadError, Interval, Options, check_training_data
from heads._training import EpochTrainer, RowBatches, holdout_split

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
STATE_FILE = "head.json"
BLOCK5 = ("block5_conv1", "block5_conv2", "block5_conv3")
CHANNELS = 512
TOP_EPOCHS = 200  # most epochs for the top on frozen block-5 features; early stopping ends sooner
TOP_PATIENCE = 10
TOP_EPOCHS_WITHOUT_HOLDOUT = 50  # when no group can be held out (one image per class)
POLICIES = {"bf16": "mixed_bfloat16", "fp32": "float32"}
STD_FLOOR = 0.1  # the top divides each channel by at least this fraction of the median channel's spread


class FinetuneHead(Head):
    """Block 5 of VGG16 (three 3x3 convolutions and a pooling, initialised from ``weights``)
    then the average and max of its maps, standardised, dropout, softmax; trained on the
    block4_pool maps a store cached, so the images are never read again.

    Training has two steps. First the top alone is fitted on block 5's frozen features
    (computed once), with early stopping; this is a good head already. Then block 5 and the top
    are trained together at a small ``learning_rate``, an epoch at a time, for as long as
    the loss on a grouped holdout of the training rows (all augmented passes of one image
    together) improves; ``epochs_`` is the best count, 0 when fine-tuning never beat the
    top alone (that network is then kept). With ``refit`` both steps run again on every
    training row for the counts chosen, so no row is lost to the holdout.

    Parameters
    ----------
    weights : str or None, the VGG16 include_top=False weights file block 5 starts from (the
        one the store was extracted with; the pipeline passes it). None: random, seeded.
    learning_rate : float, Adam's step while block 5 and the top train together.
    epochs : int, most fine-tuning epochs.
    patience : int, fine-tuning epochs without a better holdout loss before stopping; 0: no
        early stopping (every row trains, the top for 50 epochs, then block 5 for ``epochs``).
    batch_size : int
    dropout : float, dropout rate before the softmax.
    holdout : float, fraction of training groups used for early stopping.
    refit : bool, train again on every training row for the chosen epochs.
    precision : "auto", "bf16" or "fp32"; auto is bf16 where the CPU multiplies bfloat16
        natively (about twice as fast), else fp32. Weights stay float32 either way.
    seed : int, seeds the top's weights, dropout, shuffling and the holdout.
    """

    name = "finetune"
    _parameter_constraints = {
        "weights": [str, None],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "epochs": [Interval(int, 0)],
        "patience": [Interval(int, 0)],
        "batch_size": [Interval(int, 1)],
        "dropout": [Interval(float, 0, 1, closed="left")],
        "holdout": [Interval(float, 0, 1, closed="neither")],
        "refit": [Flag()],
        "precision": [Options("auto", "bf16", "fp32")],
        "seed": [Interval(int, 0)],
    }

    def __init__(self, *, weights: str | None = None, learning_rate: float = 1e-5, epochs: int = 5,
                 patience: int = 1, batch_size: int = 32, dropout: float = 0.5, holdout: float = 0.2,
                 refit: bool = True, precision: str = "auto", seed: int = 0):
        self.weights = weights
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.dropout = dropout
        self.holdout = holdout
        self.refit = refit
        self.precision = precision
        self.seed = seed

    def fit(self, X, y, groups=None) -> "FinetuneHead":
        """``X``: block4_pool maps (n_samples, h, w, 512), an array or a store's memory-mapped
        ``ShardedFeatures`` (read a batch at a time)."""
        self._validate_params()
        X, y = check_training_data(X, y)
        if X.ndim != 4 or X.shape[-1] != CHANNELS:
            raise HeadError(f"The finetune head trains VGG16's block 5 on block4_pool maps of shape "
                            f"(h, w, {CHANNELS}). Received features of shape {tuple(X.shape[1:])}: extract "
                            "them with `features --pooling block4_pool`.")
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self.feature_shape_ = tuple(X.shape[1:])
        self.precision_ = _resolve_precision(self.precision)
        initial = _block5_weights(self.weights, self.seed)
        if self.patience:
            fit_rows, stop_rows = holdout_split(y_index, groups, self.holdout, self.seed)
        else:  # no early stopping: every row trains, for `epochs`
            fit_rows, stop_rows = np.arange(len(y_index)), np.array([], int)
        logger.info("block 5's frozen features of %d training rows, then the top alone", len(y_index))
        block5 = self._block5(initial)
        pooled = _pooled(block5, X, np.arange(len(y_index)))  # once, for both fits of the top
        self.model_, self.top_epochs_ = self._fit_top(block5, pooled, y_index, fit_rows, stop_rows)
        self.epochs_ = self._finetune(X, y_index, fit_rows, stop_rows)
        self.refitted_ = bool(self.refit and len(stop_rows))
        self.rows_seen_ = len(fit_rows)
        if self.refitted_:  # both steps again, on every row, for the counts just chosen
            every = np.arange(len(y_index))
            block5 = self._block5(initial)
            self.model_, _ = self._fit_top(block5, pooled, y_index, every, np.array([], int), self.top_epochs_)
            self._finetune(X, y_index, every, np.array([], int), self.epochs_)
            self.rows_seen_ = len(every)
        return self

    def _block5(self, initial: list[np.ndarray]) -> keras.Model:
        """Block 5 and global average and max pooling: maps (h, w, 512) in, (1024,) out."""
        policy = POLICIES[self.precision_]
        maps = keras.Input(shape=self.feature_shape_, name="block4_pool_maps")
        x = maps
        for name in BLOCK5:
            x = keras.layers.Conv2D(CHANNELS, 3, padding="same", activation="relu", name=name, dtype=policy)(x)
        x = keras.layers.MaxPooling2D(2, name="block5_pool", dtype=policy)(x)
        x = keras.layers.Concatenate(name="avg_max", dtype="float32")([
            keras.layers.GlobalAveragePooling2D(name="avg", dtype=policy)(x),
            keras.layers.GlobalMaxPooling2D(name="max", dtype=policy)(x)])
        block5 = keras.Model(maps, x, name="block5")
        block5.set_weights(initial)
        return block5

    def _fit_top(self, block5: keras.Model, pooled: np.ndarray, labels: np.ndarray, fit_rows: np.ndarray,
                 stop_rows: np.ndarray, epochs: int | None = None) -> tuple[keras.Model, int]:
        """block5 + a new top fitted on the frozen ``pooled`` features of ``fit_rows``; its epochs
        are chosen on ``stop_rows`` (or given as ``epochs``)."""
        keras.utils.set_random_seed(self.seed)
        # Standardised, not clipped to the frozen features' range as the dense head clips its
        # input: fine-tuning moves block 5's features beyond that range (the clip measured worse).
        mean, variance = pooled[fit_rows].mean(axis=0), pooled[fit_rows].var(axis=0)
        top = keras.Sequential([
            keras.Input(shape=pooled.shape[1:]),
            keras.layers.Normalization(mean=mean, variance=bounded_variance(variance)),
            keras.layers.Dropout(self.dropout),
            keras.layers.Dense(len(self.classes_), activation="softmax", dtype="float32"),
        ], name="top")
        top.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        trainer = EpochTrainer(top, pooled, labels, 64, self.seed)
        if epochs is None and len(stop_rows):
            epochs, *_ = trainer.early_stopped(fit_rows, stop_rows, TOP_EPOCHS, TOP_PATIENCE)
        else:
            epochs = epochs or TOP_EPOCHS_WITHOUT_HOLDOUT
            for _ in range(epochs):
                trainer.epoch(fit_rows)
        maps = keras.Input(shape=self.feature_shape_, name="block4_pool_maps")
        model = keras.Model(maps, top(block5(maps)), name="finetune_head")
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss="sparse_categorical_crossentropy")
        return model, epochs

    def _finetune(self, X, labels: np.ndarray, fit_rows: np.ndarray, stop_rows: np.ndarray,
                  epochs: int | None = None) -> int:
        """Train ``model_`` whole on ``fit_rows`` an epoch at a time; keep the weights of the
        epoch (0: none) with the lowest loss on ``stop_rows``, or train ``epochs`` when given.
        Returns the epochs kept."""
        batches = RowBatches(X, labels, fit_rows, self.batch_size, self.seed)
        watch = epochs is None and len(stop_rows)
        held_out = RowBatches(X, labels, stop_rows, 64) if watch else None
        best_loss = self.model_.evaluate(held_out, verbose=0) if watch else None
        if watch:
            logger.info("top alone: holdout loss %.4f", best_loss)
        best_epoch, best_weights = 0, self.model_.get_weights()
        total = self.epochs if epochs is None else epochs
        for epoch in range(1, total + 1):
            started = time.perf_counter()
            self.model_.fit(batches, epochs=1, verbose=0)
            if not watch:
                best_epoch = epoch
                logger.info("fine-tuning on every training row, epoch %d/%d (%.0f s)", epoch, total,
                            time.perf_counter() - started)
                continue
            loss = self.model_.evaluate(held_out, verbose=0)
            if loss < best_loss:
                best_loss, best_epoch, best_weights = loss, epoch, self.model_.get_weights()
            logger.info("fine-tuning epoch %d/%d: holdout loss %.4f, best so far: %s (%.0f s)", epoch, total, loss,
                        f"epoch {best_epoch}" if best_epoch else "the top alone", time.perf_counter() - started)
            if epoch - best_epoch >= self.patience:
                break
        if watch:
            self.model_.set_weights(best_weights)
        return best_epoch

    def predict_proba(self, X) -> np.ndarray:
        """Shape (n_samples, n_classes), columns in ``classes_`` order."""
        X = self._check_features(X)
        return np.asarray(self.model_.predict(X, batch_size=64, verbose=0), dtype=np.float64)

    def save(self, folder: Path) -> None:
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model_.save(folder / MODEL_FILE)
        self._write_state(folder / STATE_FILE, epochs=self.epochs_, top_epochs=self.top_epochs_,
                          refitted=self.refitted_, rows_seen=self.rows_seen_, precision=self.precision_)

    @classmethod
    def load(cls, folder: Path) -> "FinetuneHead":
        folder = Path(folder)
        head, state = cls._read_state(folder / STATE_FILE)
        head.epochs_, head.top_epochs_, head.refitted_ = state["epochs"], state["top_epochs"], state["refitted"]
        head.rows_seen_, head.precision_ = state["rows_seen"], state["precision"]
        head.model_ = keras.saving.load_model(folder / MODEL_FILE, compile=False)  # for predicting only
        return head


def bounded_variance(variance: np.ndarray, fraction: float = STD_FLOOR) -> np.ndarray:
    """``variance`` with each standard deviation raised to at least ``fraction`` of the median
    positive one (1 where none is): a channel nearly constant on few training rows is not divided
    by its tiny spread, so a new image cannot turn it into z-scores in the thousands."""
    std = np.sqrt(variance)
    spread = std[std > 0]
    return np.maximum(std, fraction * np.median(spread) if spread.size else 1.0) ** 2


def _resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    from features.spec import cpu_flags, native_precision

    return native_precision(cpu_flags())


def _block5_weights(weights: str | None, seed: int) -> list[np.ndarray]:
    """Block 5's kernels and biases, in layer order, from a VGG16 notop weights file (None: random, seeded)."""
    from keras.applications import vgg16

    keras.utils.set_random_seed(seed)
    try:
        base = vgg16.VGG16(include_top=False, weights=weights, input_shape=(32, 32, 3))
    except (ValueError, OSError) as error:
        raise HeadError(f"Could not read VGG16 weights from {weights}: {str(error).splitlines()[0][:200]}. "
                        "Pass the include_top=False weights file the store was extracted with.") from None
    return [array for name in BLOCK5 for array in base.get_layer(name).get_weights()]


def _pooled(block5: keras.Model, X, rows: np.ndarray, batch: int = 64) -> np.ndarray:
    """``block5`` on ``X[rows]``, ``batch`` rows at a time: (len(rows), 1024) float32."""
    parts = [np.asarray(block5.predict_on_batch(np.asarray(X[rows[start:start + batch]], np.float32)))
             for start in range(0, len(rows), batch)]
    return np.concatenate(parts).astype(np.float32)
