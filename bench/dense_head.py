"""The dense head beside the recipe and its own variants, by paired cross-validation over seeds.

Run: .venv/bin/python bench/dense_head.py [--data DIR ...] [--per-class 0 20 60] [--cv 1] [--seeds 3]
[--configs NAME ...]

For each data set (default: the three shared sets), builds (or reuses) a `--pooling blocks` store
with `bench/accuracy.py`'s `build_store` (real weights, 224 px), pools training and validation
images, and splits them into 5 folds grouped by source image (``--cv R`` repeats with new folds;
``--per-class N`` draws N images a class from each fold's training part, 0: every image). In every
fold each configuration is fitted as one network once per seed on block 5's columns (what `compare`
gives the dense head) unless it names others, and predicts the held-out images. A network's accuracy
moves by a point or two with its seed alone on a few hundred photos, so each configuration's figure
is the mean over seeds; its row ``..., N networks`` scores the seeds' probabilities averaged, which
is what ``DenseHead(networks=N)`` (seeds 0..N-1) predicts. Differences to the first row come per
image with their standard error.

Configurations (``--configs``): ``input_dropout`` 0 (the head before it had one), 0.5 (its
default) and 0.75, ``units 1024`` (the hidden layer four times as wide), ``blocks 4+5`` (the default on block 4's columns beside block 5's, which logreg and the
SVM may choose), ``sqrt_l2 input`` (the default on block 5's columns after logreg's signed square
root + L2 per group, computed here before the network: no built-in Keras layer computes it),
``recipe`` (the Keras blog's top model, trained on the same rows' flattened block5_pool maps from a
``--pooling none`` store, one row: a run's figure averaged over seeds); by default
``input_dropout 0.5`` alone, one network against ``--seeds`` averaged.

Prints one line per data set, size and configuration; writes nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import build_store, store_options, train_recipe  # noqa: E402  (bench/ is not a package)
from normalization import DATASETS, paired_difference, paired_folds, pooled, split_with_groups  # noqa: E402

from features import FeatureStore  # noqa: E402
from heads import DenseHead  # noqa: E402
from heads._sklearn import signed_sqrt_l2  # noqa: E402
from pipeline.runs import BLOCK5, COLUMN_CHOICES  # noqa: E402

BLOCK45 = COLUMN_CHOICES[1]

CONFIGS = {"input_dropout 0": {"input_dropout": 0.0}, "input_dropout 0.5": {"input_dropout": 0.5},
           "input_dropout 0.75": {"input_dropout": 0.75}, "units 1024": {"units": 1024},
           "blocks 4+5": {"columns": BLOCK45}, "sqrt_l2 input": {}}
SQRT_L2_INPUT = {"sqrt_l2 input"}  # configurations whose rows are normalised as logreg's before the network


def sqrt_l2_groups(X: np.ndarray, column_groups: dict, columns: str) -> np.ndarray:
    """``X`` with each of ``columns``' groups signed-square-rooted and L2-normalised per row, as
    logreg's ``sqrt_l2`` does (a per-row function: no fold's rows inform another's)."""
    X = np.array(X, dtype=np.float32)
    for name in columns.split("+"):
        start, stop = column_groups[name]
        X[:, start:stop] = signed_sqrt_l2(X[:, start:stop])
    return X


RECIPE = "recipe"  # not a DenseHead: the Keras blog's top model on the flattened block5_pool maps


def paired_cv(store: FeatureStore, X: np.ndarray, y: np.ndarray, groups: np.ndarray, maps: np.ndarray | None,
              repeats: int, per_class: int, seeds: int, configs: list[str]) -> dict:
    """Row name -> (each held-out image's accuracy, its mean true-class log loss, fit seconds), over
    ``repeats`` grouped 5-fold splits (the same folds for each): per configuration, one network's
    averaged over ``seeds``, and the ``seeds`` networks' probabilities averaged (the recipe, trained
    on ``maps``, the rows of ``X`` as block5_pool maps: one run's, averaged over ``seeds``)."""
    rows = [row for name in configs for row in ((name,) if name == RECIPE else (name, f"{name}, {seeds} networks"))]
    right, losses = {row: [] for row in rows}, {row: [] for row in rows}
    seconds = dict.fromkeys(rows, 0.0)
    classes, y_index = np.unique(y, return_inverse=True)
    normalised = sqrt_l2_groups(X, store.column_groups, BLOCK5) if SQRT_L2_INPUT & set(configs) else None
    for fit_rows, test_rows in paired_folds(y, groups, repeats, per_class):
        for name in configs:
            started = time.perf_counter()
            if name == RECIPE:
                probas = [train_recipe(maps[fit_rows], y_index[fit_rows], len(classes), seed).predict(
                    maps[test_rows], verbose=0).astype(np.float64) for seed in range(seeds)]
            else:
                inputs = normalised if name in SQRT_L2_INPUT else X
                probas = [DenseHead(**{"column_groups": store.column_groups, "columns": BLOCK5, "seed": seed,
                                       "networks": 1, **CONFIGS[name]}).fit(inputs[fit_rows], y[fit_rows], groups[fit_rows])
                          .predict_proba(inputs[test_rows]) for seed in range(seeds)]
            elapsed = time.perf_counter() - started
            seconds[name] += elapsed / seeds
            chances = {name: probas}
            if name != RECIPE:
                seconds[f"{name}, {seeds} networks"] += elapsed
                chances[f"{name}, {seeds} networks"] = [np.mean(probas, axis=0)]
            truth = y_index[test_rows]
            for row, row_probas in chances.items():
                right[row].append(np.mean([p.argmax(axis=1) == truth for p in row_probas], axis=0))
                losses[row].append(np.mean([-np.log(np.clip(p[np.arange(len(truth)), truth], 1e-15, 1))
                                            for p in row_probas], axis=0))
    return {row: (np.concatenate(right[row]), float(np.concatenate(losses[row]).mean()), seconds[row]) for row in rows}


def aligned_maps(data: Path, args, sources: np.ndarray) -> np.ndarray:
    """The block5_pool maps (the recipe's float16 ``--pooling none`` store) of the images
    ``sources`` name, in that order."""
    store = FeatureStore(args.cache / build_store(data, "maps", args)["key"])
    splits = [store.split_arrays(split, passes=False) for split in ("train", "validation")]
    row = {source: index for index, source in enumerate(np.concatenate([split["sources"] for split in splits]))}
    return np.concatenate([split["features"] for split in splits])[[row[source] for source in sources]]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    store_options(parser, DATASETS)
    parser.add_argument("--per-class", type=int, nargs="+", default=[0, 20, 60])
    parser.add_argument("--cv", type=int, default=1, metavar="R", help="repeats of the 5-fold split (default 1)")
    parser.add_argument("--seeds", type=int, default=3, help="networks a configuration, seeds 0..N-1 (default 3)")
    parser.add_argument("--configs", nargs="+", choices=[RECIPE, *CONFIGS], default=["input_dropout 0.5"],
                        help="configurations (default: input_dropout 0.5, the dense head's)")
    args = parser.parse_args(argv)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing hints, as `compare` hides them
    args.cache.mkdir(parents=True, exist_ok=True)
    for data in args.data:
        store = FeatureStore(args.cache / build_store(data, "blocks", args)["key"])
        splits = [split_with_groups(store, split, passes=False) for split in ("train", "validation")]
        X, y, groups = pooled(*splits)
        sources = np.concatenate([split["sources"] for split in splits])
        maps = aligned_maps(data, args, sources) if RECIPE in args.configs else None
        for per_class in args.per_class:
            scores = paired_cv(store, X, y, groups, maps, args.cv, per_class, args.seeds, args.configs)
            first = next(iter(scores.values()))[0]
            for name, (right, log_loss, seconds) in scores.items():
                print(f"{data.name} | {per_class or 'all'} | {name} | {right.mean():.3f} | "
                      f"{paired_difference(right, first)} | log loss {log_loss:.3f} | fit {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
