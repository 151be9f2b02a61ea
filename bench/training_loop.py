"""The Keras heads' training loop (``heads._training.EpochTrainer``) beside Keras' own ``fit``.

Run: .venv/bin/python bench/training_loop.py [--rows 40 1100 4000] [--columns 2560] [--classes 10] [--epochs 30]

For each row count, builds the dense head's network (``DenseHead._build``: block 5's 1,024 columns
of 2,560, as `compare` gives it) on random features whose class moves the mean a little, holds 20%
of the rows out, and trains it ``--epochs`` epochs (batches of 64, the holdout loss after each, as
early stopping needs), once with ``model.fit`` (a ``RowBatches`` stream and its validation, as the
head trained before) and once with ``EpochTrainer``, from the same seed, each in a fresh process
(an EpochTrainer run after a ``fit`` in one process measured slower). Prints the seconds of the first
epoch (tracing included) and the milliseconds of each later one, the holdout accuracy reached and
the ratio of the totals; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import keras
import numpy as np

from heads import DenseHead
from heads._dense import _statistics
from heads._training import EpochTrainer, RowBatches


class EpochTimes(keras.callbacks.Callback):
    """Seconds from the start of ``fit`` to the end of each epoch."""

    def on_train_begin(self, logs=None):
        self.started, self.ends = time.perf_counter(), []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter() - self.started)


def rows_and_network(rows: int, columns: int, classes: int):
    """Random features with a small class signal, their labels, the fit and holdout rows, and a
    function building the dense head's network on them from seed 0."""
    rng = np.random.default_rng(0)
    labels = np.arange(rows) % classes
    X = (rng.random((rows, columns)) + labels[:, None] * 0.02 * rng.random(columns)).astype(np.float32)
    stop = rng.permutation(rows)[:rows // 5]
    fit = np.setdiff1d(np.arange(rows), stop)
    head = DenseHead(column_groups={"block4": [0, columns - 1024], "block5": [columns - 1024, columns]},
                     columns="block5")
    head.classes_, head.feature_shape_ = np.arange(classes), (columns,)

    def build() -> keras.Model:
        keras.utils.set_random_seed(0)
        return head._build(_statistics(X, fit), classes, "block5")
    return X, labels, fit, stop, build


def with_keras_fit(X, labels, fit, stop, build, epochs: int) -> tuple[list[float], float]:
    model, times = build(), EpochTimes()
    model.fit(RowBatches(X, labels, fit, 64, 0), validation_data=RowBatches(X, labels, stop, 1024),
              epochs=epochs, verbose=0, callbacks=[times])
    proba = model.predict(X[stop], batch_size=1024, verbose=0)
    return times.ends, float((proba.argmax(axis=1) == labels[stop]).mean())


def with_epoch_trainer(X, labels, fit, stop, build, epochs: int) -> tuple[list[float], float]:
    model, started, ends = build(), time.perf_counter(), []
    trainer = EpochTrainer(model, X, labels, 64, 0)
    for _ in range(epochs):
        trainer.epoch(fit)
        trainer.score(stop)
        ends.append(time.perf_counter() - started)
    return ends, trainer.score(stop)[1]


LOOPS = {"keras fit": with_keras_fit, "EpochTrainer": with_epoch_trainer}


def in_fresh_process(rows: int, loop: str, args) -> tuple[list[float], float]:
    """``loop``'s epoch end times and holdout accuracy on ``rows`` rows, from a new interpreter."""
    command = [sys.executable, __file__, "--rows", str(rows), "--columns", str(args.columns),
               "--classes", str(args.classes), "--epochs", str(args.epochs), "--loop", loop]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[40, 1100, 4000])
    parser.add_argument("--columns", type=int, default=2560)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--loop", choices=list(LOOPS), help="run this loop here on one --rows; print JSON")
    args = parser.parse_args(argv)
    if args.loop:
        print(json.dumps(LOOPS[args.loop](*rows_and_network(args.rows[0], args.columns, args.classes), args.epochs)))
        return
    print("| rows | loop | first epoch s | later epochs ms | holdout accuracy | total s |")
    print("|---|---|---|---|---|---|")
    for rows in args.rows:
        totals = {}
        for loop in LOOPS:
            ends, accuracy = in_fresh_process(rows, loop, args)
            later = 1000 * (ends[-1] - ends[0]) / (len(ends) - 1)
            totals[loop] = ends[-1]
            print(f"| {rows} | {loop} | {ends[0]:.2f} | {later:.0f} | {accuracy:.3f} | {ends[-1]:.1f} |", flush=True)
        print(f"| {rows} | ratio | | | | {totals['keras fit'] / totals['EpochTrainer']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
