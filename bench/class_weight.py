"""The heads' class weights on folders where some classes have few photos.

Run: .venv/bin/python bench/class_weight.py [--data DIR ...] [--rare 8] [--cv 1]

People's folders are rarely balanced: a few hundred photos of one class beside a dozen of another.
For each data set (default: the three shared sets), builds (or reuses) its `blocks` store with
`bench/accuracy.py`'s `build_store`, pools its training and validation photos and splits them in the
paired cross-validation of `bench/normalization.py` (grouped 5-fold splits, ``--cv`` repeats). In each
fold's fit part every other class (by label) keeps ``--rare`` photos, drawn at random, the rest every
photo; the logreg, SVM and dense heads are fitted as `compare` fits them (searches included) with
``class_weight`` ``none`` and ``balanced``, and each is scored on the held-out part, where every
class keeps its photos:

- accuracy on the held-out photos (about as balanced as the set);
- recall of the rare classes alone;
- accuracy weighted to the fit part's class shares (each held-out photo weighs its class's share of
  the fit rows over its share of the held-out rows): what a validation split drawn like the training
  photos would say.

Prints one line per data set and head, with each figure's difference to logreg's with ``none`` ± its
standard error; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import store_options  # noqa: E402  (bench/ is not a package)
from normalization import DATASETS, paired_folds, pooled_store  # noqa: E402

from pipeline.runs import head_for_store  # noqa: E402

HEADS = {"logreg none": ("logreg", {"class_weight": "none"}), "logreg balanced": ("logreg", {"class_weight": "balanced"}),
         "svm none": ("svm", {"class_weight": "none"}), "svm balanced": ("svm", {"class_weight": "balanced"}),
         "dense none": ("dense", {"class_weight": "none"}),
         "dense balanced": ("dense", {"class_weight": "balanced"})}


def imbalanced(rows: np.ndarray, y: np.ndarray, groups: np.ndarray, rare: int, seed: int) -> np.ndarray:
    """``rows`` with every odd-numbered class cut to ``rare`` photos (whole groups) drawn at random."""
    generator = np.random.default_rng(seed)
    kept = []
    for label in np.unique(y[rows]):
        mine = rows[y[rows] == label]
        if label % 2:
            images = generator.choice(np.unique(groups[mine]), min(rare, len(np.unique(groups[mine]))), replace=False)
            mine = mine[np.isin(groups[mine], images)]
        kept.append(mine)
    return np.concatenate(kept)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    return float(np.sum(values * weights) / np.sum(weights))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    store_options(parser, DATASETS)
    parser.add_argument("--rare", type=int, default=8, help="photos of each rare class in a fold's fit part (default 8)")
    parser.add_argument("--cv", type=int, default=1, metavar="R", help="repeats of the grouped 5-fold split (default 1)")
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS),
                        help="heads to fit (logreg none, the baseline, always is)")
    args = parser.parse_args(argv)
    heads = {name: HEADS[name] for name in HEADS if name in args.heads or name == "logreg none"}
    args.cache.mkdir(parents=True, exist_ok=True)
    print("set | head | accuracy | rare classes' recall | accuracy at the fit part's shares")
    for data in args.data:
        store, X, y, groups = pooled_store(data, args)
        right = {name: [] for name in heads}
        rare_rows, shares = [], []
        for fold, (fit_rows, test_rows) in enumerate(paired_folds(y, groups, args.cv, 0)):
            fit_rows = imbalanced(fit_rows, y, groups, args.rare, fold)
            for name, (head_name, params) in heads.items():
                head = head_for_store(store, head_name, params).fit(X[fit_rows], y[fit_rows], groups=groups[fit_rows])
                right[name].append((head.predict(X[test_rows]) == y[test_rows]).astype(float))
            rare_rows.append(y[test_rows] % 2 == 1)
            fit_share = np.bincount(y[fit_rows], minlength=y.max() + 1) / len(fit_rows)
            test_share = np.bincount(y[test_rows], minlength=y.max() + 1) / len(test_rows)
            shares.append((fit_share / np.maximum(test_share, 1e-12))[y[test_rows]])
        rare_rows, shares = np.concatenate(rare_rows), np.concatenate(shares)
        base = np.concatenate(right["logreg none"])
        for name in heads:
            correct = np.concatenate(right[name])
            difference = correct - base
            cells = []
            for weights in (np.ones_like(correct), rare_rows.astype(float), shares):
                gain = weighted_mean(difference, weights)
                error = np.sqrt(np.sum(weights ** 2 * (difference - gain) ** 2)) / np.sum(weights)  # of a weighted mean
                cells.append(f"{weighted_mean(correct, weights):.3f} ({100 * gain:+.1f} ± {100 * error:.1f})")
            print(f"{data.name} | {name} | {' | '.join(cells)}", flush=True)


if __name__ == "__main__":
    main()
