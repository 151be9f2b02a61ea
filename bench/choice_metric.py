"""`compare`'s choice by cross-validated balanced accuracy against plain accuracy, on folders where
some classes have few photos and on whole (about balanced) sets.

Run: .venv/bin/python bench/choice_metric.py [--data DIR ...] [--rare 8 20 0] [--cv 1]

For each data set (default: the three shared sets) and each ``--rare`` (0: no class cut), the pooled
training and validation photos are split as in `bench/class_weight.py` (grouped 5-fold, every other
class of a fold's fit part cut to ``--rare`` photos; the held-out fifth keeps every photo). In each
fold the logreg, SVM and dense heads are fitted as `compare` fits them, then the ensemble on them,
whose grouped out-of-fold votes score every head and subset on the fit part by both accuracy and
balanced accuracy. Each criterion chooses among the three heads and the ensemble (its best subset
by that criterion), as `compare` does by each head's own cross-validated score, and the two choices
are scored on the held-out photos. Prints, per set and cut, the held-out accuracy and balanced
accuracy of each choice, the balanced choice's difference ± its standard error (paired over the
held-out photos), and in how many folds the choices differ; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import store_options  # noqa: E402  (bench/ is not a package)
from class_weight import imbalanced  # noqa: E402
from normalization import DATASETS, paired_folds, pooled_store  # noqa: E402

from heads import EnsembleHead  # noqa: E402
from pipeline.runs import head_for_store  # noqa: E402

CRITERIA = ("accuracy", "balanced_accuracy")


def choice(ensemble: EnsembleHead, criterion: str) -> str:
    """The candidate (a head, or the ensemble's best subset by ``criterion``) with the best
    out-of-fold ``criterion``; ties: the simpler candidate, as `compare`'s."""
    scores = ensemble.cv_scores_
    subsets = sorted(scores, key=lambda k: (-scores[k][criterion], scores[k]["log_loss"], -k.count("+")))
    candidates = ["logreg", "svm", "dense", subsets[0]]
    return max(candidates, key=lambda k: (scores[k][criterion], -candidates.index(k)))


def cut_folds(argv, description: str):
    """Parse the options of this script and `search_metric.py`, print their table's header, and yield
    per data set and ``--rare`` cut: (data folder, store, X, y, groups, the cut, each fold's (fit rows,
    every other class cut, and held-out rows))."""
    parser = argparse.ArgumentParser(description=description)
    store_options(parser, DATASETS)
    parser.add_argument("--rare", type=int, nargs="+", default=[8, 20, 0],
                        help="photos of each rare class in a fold's fit part; 0: no cut (default 8 20 0)")
    parser.add_argument("--cv", type=int, default=1, metavar="R", help="repeats of the grouped 5-fold split (default 1)")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    print("set | rare photos | by accuracy: accuracy / balanced | by balanced accuracy: accuracy / balanced "
          "| difference (points) | folds choosing otherwise")
    for data in args.data:
        store, X, y, groups = pooled_store(data, args)
        for rare in args.rare:
            folds = [(imbalanced(fit_rows, y, groups, rare, fold) if rare else fit_rows, test_rows)
                     for fold, (fit_rows, test_rows) in enumerate(paired_folds(y, groups, args.cv, 0))]
            yield data, store, X, y, groups, rare, folds


def main(argv=None) -> None:
    for data, store, X, y, groups, rare, folds in cut_folds(argv, __doc__.split("\n")[0]):
        right = {criterion: [] for criterion in CRITERIA}
        labels, differ, chosen = [], 0, []
        for fit_rows, test_rows in folds:
            fit = (X[fit_rows], y[fit_rows])
            members = {name: head_for_store(store, name, {}).fit(*fit, groups=groups[fit_rows])
                       for name in ("logreg", "svm", "dense")}
            ensemble = head_for_store(store, "ensemble", {}).fit(*fit, groups=groups[fit_rows], fitted=members)
            picks = {criterion: choice(ensemble, criterion) for criterion in CRITERIA}
            for criterion, pick in picks.items():
                voters = pick.split("+")
                proba = np.mean([members[name].predict_proba(X[test_rows]) for name in voters], axis=0)
                right[criterion].append(members[voters[0]].classes_[proba.argmax(axis=1)] == y[test_rows])
            labels.append(y[test_rows])
            differ += picks["accuracy"] != picks["balanced_accuracy"]
            chosen.append(f"{picks['accuracy']}/{picks['balanced_accuracy']}")
        print(f"{data.name} | {rare or 'all'} | {held_out(right, labels)} | {differ} of {len(chosen)} "
              f"({', '.join(chosen)})", flush=True)


def held_out(right: dict, labels: list) -> str:
    """Table cells: for ``right`` (criterion -> each fold's held-out photos, right or not) by accuracy
    and by balanced accuracy, the accuracy / balanced accuracy on the held-out photos (``labels``,
    fold by fold); then the second's difference ± its standard error, paired over the photos."""
    labels, cells = np.concatenate(labels), []
    for criterion in CRITERIA:
        correct = np.concatenate(right[criterion]).astype(float)
        recall = np.mean([correct[labels == label].mean() for label in np.unique(labels)])
        cells.append(f"{correct.mean():.3f} / {recall:.3f}")
    difference = np.concatenate(right["balanced_accuracy"]).astype(float) - np.concatenate(right["accuracy"])
    error = difference.std(ddof=1) / np.sqrt(len(difference))
    return f"{cells[0]} | {cells[1]} | {100 * difference.mean():+.1f} ± {100 * error:.1f}"


if __name__ == "__main__":
    main()
