"""Logistic regression's input normalisation and column groups, on every image and on few a class.

Run: .venv/bin/python bench/normalization.py [--data DIR ...] [--per-class 0 20 60]

For each data set (default: the three shared sets), builds (or reuses) a `--pooling blocks` store
with `bench/accuracy.py`'s `build_store` (real weights, 224 px), then fits one logistic regression per
configuration on the training rows (C chosen by 3-fold grouped cross-validation on them) and
scores it on every validation image. ``--per-class N`` draws N training images a class (seeds 0, 1,
2; 0: every image) to show the small-data case. Configurations:

- ``b5 avgmax, none, std``: logreg before the default became sqrt_l2 (block 5 average and max,
  clipped to the training range and standardised);
- ``b5 avgmax, sqrt_l2, std``: today's default (signed square root + L2 per group first);
- ``b5 avgmax, sqrt_l2, raw``: the same without clipping and standardising (C on a wider grid);
- ``b4+b5 avgmax, sqrt_l2, raw``: blocks 4 and 5 as well, as the plain script of issue 22.

Prints one line per data set, size and configuration; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, SHARED, WEIGHTS, build_store  # noqa: E402  (bench/ is not a package)

from features import FeatureStore  # noqa: E402
from heads._sklearn import ColumnGroups, scaling_steps  # noqa: E402

DATASETS = [SHARED / "data" / name for name in ("dtd_6", "monkeys_10", "cats_and_dogs_filtered")]
BLOCK5 = "block5_avg+block5_max"
# name -> (column groups, normalisation, clip and standardise)
CONFIGS = {
    "b5 avgmax, none, std": (BLOCK5, "none", True),
    "b5 avgmax, sqrt_l2, std": (BLOCK5, "sqrt_l2", True),
    "b5 avgmax, sqrt_l2, raw": (BLOCK5, "sqrt_l2", False),
    "b4+b5 avgmax, sqrt_l2, raw": ("block4_avg+block4_max+" + BLOCK5, "sqrt_l2", False),
}
STANDARDISED_C = [0.001, 0.01, 0.1, 1.0, 10.0]  # the logreg head's grid
RAW_C = [0.1, 1.0, 10.0, 100.0, 1000.0]  # unit-norm rows need weaker regularisation


def fit_and_score(store: FeatureStore, config: tuple, train: dict, rows: np.ndarray, validation: dict) -> float:
    columns, normalize, standardise = config
    steps = [("groups", ColumnGroups(store.column_groups, columns, normalize))]
    steps += [(type(step).__name__.lower(), step) for step in scaling_steps()] if standardise else []
    pipeline = Pipeline([*steps, ("model", LogisticRegression(max_iter=3000))])
    grid = {"model__C": STANDARDISED_C if standardise else RAW_C}
    search = GridSearchCV(pipeline, grid, cv=GroupKFold(3), n_jobs=1)
    search.fit(train["features"][rows], train["labels"][rows], groups=train["groups"][rows])
    return float((search.best_estimator_.predict(validation["features"]) == validation["labels"]).mean())


def draws(train: dict, per_class: int) -> list[np.ndarray]:
    """Row indices: every row (0), else ``per_class`` images a class for seeds 0, 1 and 2."""
    if per_class == 0:
        return [np.arange(len(train["labels"]))]
    labels, groups = train["labels"], train["groups"]
    chosen = []
    for seed in range(3):
        generator = np.random.default_rng(seed)
        images = [generator.choice(np.unique(groups[labels == label]), min(per_class, len(np.unique(groups[labels == label]))),
                                   replace=False) for label in np.unique(labels)]
        chosen.append(np.flatnonzero(np.isin(groups, np.concatenate(images))))
    return chosen


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=DATASETS)
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--precision", default="auto", help="the stores' --precision (default auto)")
    parser.add_argument("--cache", type=Path, default=ROOT / "cache" / "accuracy")
    parser.add_argument("--per-class", type=int, nargs="+", default=[0, 20, 60])
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    for data in args.data:
        store = FeatureStore(args.cache / build_store(data, "blocks", args)["key"])
        train = store.split_arrays("train")
        train["groups"] = store.source_groups(train["sources"])
        validation = store.split_arrays("validation", passes=False)
        for per_class in args.per_class:
            samples = draws(train, per_class)
            for name, config in CONFIGS.items():
                accuracies = [fit_and_score(store, config, train, rows, validation) for rows in samples]
                print(f"{data.name} | {per_class or 'all'} | {name} | {np.mean(accuracies):.3f} | "
                      f"{', '.join(f'{a:.3f}' for a in accuracies)}", flush=True)


if __name__ == "__main__":
    main()
