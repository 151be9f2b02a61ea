"""What a final fit on the validation photos too is worth: `--final-fit train+validation` (auto's choice).

Run: .venv/bin/python bench/final_fit.py [--data DIR ...] [--per-class 0 20] [--cv 1] [--heads ...]

A user's labelled photos are split into training and validation; the heads are tuned and chosen on
the training photos and scored on validation. Refitting the tuned head on both (nothing searched
again) gives it a quarter more photos to learn from, at the price of no longer having a held-out
figure for that exact model. This measures the price's worth. For each data set (default: the three
shared sets), builds (or reuses) its `blocks` store with `bench/accuracy.py`'s `build_store`, pools
its training and validation photos and splits them in the paired cross-validation of
`bench/normalization.py` (grouped 5-fold splits, ``--cv`` repeats, ``--per-class N`` photos a class
drawn from each fold's fit part): each fold's held-out part is the test. The fit part is split again,
grouped and stratified, four fifths training and one fifth validation, as a user's folder would be;
each head is fitted as `compare` fits it on the training part (its search included), then:

- ``train``: that head, scored on the test photos (what `predict` uses today);
- ``train+validation``: the same head refitted by its ``fit_like`` on training and validation.

Prints one line per data set, size and head: the test accuracy of both, the difference with its
standard error, and the seconds of the refit; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import store_options  # noqa: E402  (bench/ is not a package)
from normalization import DATASETS, paired_difference, paired_folds, pooled_store  # noqa: E402

from features import FeatureStore  # noqa: E402
from heads._ensemble import MEMBER_HEADS  # noqa: E402
from pipeline.runs import head_for_store  # noqa: E402

HEADS = (*MEMBER_HEADS, "ensemble")


def user_split(y: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) positions: one fifth of the groups, stratified, held out as validation."""
    splitter = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
    return next(splitter.split(y, y, groups))


def fold_scores(store: FeatureStore, X, y, groups, fit_rows, test_rows, names, seed: int) -> dict:
    """Head -> {"train": right, "train+validation": right, "refit_s": seconds} on ``test_rows``."""
    train, validation = (fit_rows[part] for part in user_split(y[fit_rows], groups[fit_rows], seed))
    both = np.concatenate([train, validation])
    fitted, scores = {}, {}
    for name in sorted(names, key=lambda n: n == "ensemble"):  # the ensemble reuses its members, as in compare
        head = head_for_store(store, name, {})
        members = {n: fitted[n] for n in MEMBER_HEADS if n in fitted} if name == "ensemble" else None
        if members:
            head.fit(X[train], y[train], groups=groups[train], fitted=members)
        else:
            head.fit(X[train], y[train], groups=groups[train])
        fitted[name] = head
        started = time.perf_counter()
        final = head.fit_like(X[both], y[both], groups[both])
        seconds = time.perf_counter() - started
        scores[name] = {way: model.predict(X[test_rows]) == y[test_rows]
                        for way, model in (("train", head), ("train+validation", final))}
        scores[name]["refit_s"] = seconds
    return scores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    store_options(parser, DATASETS)
    parser.add_argument("--per-class", type=int, nargs="+", default=[0, 20],
                        help="photos a class in each fold's fit part, before its validation is split off (0: all)")
    parser.add_argument("--cv", type=int, default=1, metavar="R", help="repeats of the grouped 5-fold split (default 1)")
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    print("set | photos a class | head | train | train+validation | difference | refit s")
    for data in args.data:
        store, X, y, groups = pooled_store(data, args)
        for per_class in args.per_class:
            totals = {name: {"train": [], "train+validation": [], "refit_s": 0.0} for name in args.heads}
            for fold, (fit_rows, test_rows) in enumerate(paired_folds(y, groups, args.cv, per_class)):
                for name, scores in fold_scores(store, X, y, groups, fit_rows, test_rows, args.heads, fold).items():
                    totals[name]["train"].append(scores["train"])
                    totals[name]["train+validation"].append(scores["train+validation"])
                    totals[name]["refit_s"] += scores["refit_s"]
            for name, total in totals.items():
                before, after = (np.concatenate(total[way]).astype(float) for way in ("train", "train+validation"))
                print(f"{data.name} | {per_class or 'all'} | {name} | {before.mean():.3f} | {after.mean():.3f} | "
                      f"{paired_difference(after, before)} | {total['refit_s']:.0f}", flush=True)


if __name__ == "__main__":
    main()
