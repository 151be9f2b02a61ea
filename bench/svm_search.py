"""The SVM head's search over its input normalisation: which way exact ties go, and whether to search it.

Run: .venv/bin/python bench/svm_search.py [--data DIR ...] [--per-class 0 20] [--cv 1]

The SVM's grouped search scores accuracy on three folds, so several of its grid points often tie to
the photo; the first in grid order wins. For each data set (default: the three shared sets), builds
(or reuses) its `blocks` store with `bench/accuracy.py`'s `build_store`, then fits the SVM head as
`compare` does (its search on the rows it is fitted on: kernel, C, block 5 or blocks 4 and 5, and the
normalisation) in the paired cross-validation of `bench/normalization.py` (training and validation
photos pooled, grouped 5-fold splits, ``--cv`` repeats, ``--per-class N`` photos a class drawn from
each fold's training part), once per search space:

- ``none first``: the search space as it was, ``normalize`` ["none", "sqrt_l2"] (ties go to none);
- ``sqrt_l2 first``: the same grid, ["sqrt_l2", "none"] (ties go to the signed square root + L2);
- ``sqrt_l2 only``: ``normalize`` not searched, always sqrt_l2 (half the grid).

Prints one line per data set, size and space: accuracy of every held-out photo, its difference to
the first space's with the standard error, log loss, and how often each normalisation was chosen,
and the seconds the fits took; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import build_store, store_options  # noqa: E402  (bench/ is not a package)
from normalization import DATASETS, paired_difference, paired_folds, pooled, split_with_groups  # noqa: E402

from features import FeatureStore  # noqa: E402
from pipeline.runs import head_for_store  # noqa: E402

SPACES = {"none first": ["none", "sqrt_l2"], "sqrt_l2 first": ["sqrt_l2", "none"], "sqrt_l2 only": ["sqrt_l2"]}


def svm_head(store: FeatureStore, normalize: list[str]):
    """The SVM head as `compare` creates it on ``store``, its search offering ``normalize``."""
    head = head_for_store(store, "svm", {})
    return head.set_params(search_space={**head.search_space, "normalize": normalize})


def paired_cv(store: FeatureStore, train: dict, validation: dict, repeats: int, per_class: int) -> dict:
    """Space -> (whether each held-out photo was right, mean log loss, normalisations chosen, fit s)."""
    X, y, groups = pooled(train, validation)
    right, log_loss = {name: [] for name in SPACES}, {name: 0.0 for name in SPACES}
    chosen, seconds = {name: [] for name in SPACES}, {name: 0.0 for name in SPACES}
    for fit_rows, test_rows in paired_folds(y, groups, repeats, per_class):
        for name, normalize in SPACES.items():
            started = time.perf_counter()
            head = svm_head(store, normalize).fit(X[fit_rows], y[fit_rows], groups=groups[fit_rows])
            seconds[name] += time.perf_counter() - started
            proba = head.predict_proba(X[test_rows])
            right[name].append(head.classes_[proba.argmax(axis=1)] == y[test_rows])
            true_class = proba[np.arange(len(test_rows)), np.searchsorted(head.classes_, y[test_rows])]
            log_loss[name] -= np.log(np.clip(true_class, 1e-15, 1)).sum()
            chosen[name].append(head.best_params_.get("normalize", normalize[0]))
    return {name: (np.concatenate(right[name]).astype(float), log_loss[name] / len(y) / repeats,
                   {way: chosen[name].count(way) for way in SPACES["none first"]}, seconds[name]) for name in SPACES}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    store_options(parser, DATASETS)
    parser.add_argument("--per-class", type=int, nargs="+", default=[0, 20])
    parser.add_argument("--cv", type=int, default=1, metavar="R", help="repeats of the grouped 5-fold split (default 1)")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    print("set | photos a class | search space | accuracy | against none first | log loss | chosen | fit s")
    for data in args.data:
        store = FeatureStore(args.cache / build_store(data, "blocks", args)["key"])
        train = split_with_groups(store, "train", passes=False)
        validation = split_with_groups(store, "validation", passes=False)
        for per_class in args.per_class:
            scores = paired_cv(store, train, validation, args.cv, per_class)
            first = scores["none first"][0]
            for name, (correct, log_loss, chosen, seconds) in scores.items():
                ways = ", ".join(f"{way} {count}" for way, count in chosen.items())
                print(f"{data.name} | {per_class or 'all'} | {name} | {correct.mean():.3f} | "
                      f"{paired_difference(correct, first)} | {log_loss:.3f} | {ways} | {seconds:.0f}", flush=True)


if __name__ == "__main__":
    main()
