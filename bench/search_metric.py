"""The SVM head's search by balanced accuracy against plain accuracy, with and without rare classes.

Run: .venv/bin/python bench/search_metric.py [--data DIR ...] [--rare 8 20 0] [--cv 1]

Folds as in `bench/choice_metric.py` (the pooled photos in grouped 5-fold splits; in each fold's fit
part every other class cut to ``--rare`` photos, 0: no cut; the held-out fifth keeps every photo).
In each fold the SVM head is fitted as `compare` fits it twice, its search (C, kernel, column groups)
scored by balanced accuracy (its default) and by accuracy, and each is scored on the held-out photos.
Prints, per set and cut, each search's held-out accuracy and balanced accuracy, the difference ± its
standard error (paired over the held-out photos) and how many folds chose other parameters; writes
nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from choice_metric import CRITERIA, cut_folds, held_out  # noqa: E402  (bench/ is not a package)

from pipeline.runs import head_for_store  # noqa: E402


def main(argv=None) -> None:
    for data, store, X, y, groups, rare, folds in cut_folds(argv, __doc__.split("\n")[0]):
        right, labels, choices = {metric: [] for metric in CRITERIA}, [], []
        for fit_rows, test_rows in folds:
            chosen = {}
            for metric in CRITERIA:
                svm = head_for_store(store, "svm", {})
                svm.search_metric = metric
                svm.fit(X[fit_rows], y[fit_rows], groups=groups[fit_rows])
                right[metric].append(svm.predict(X[test_rows]) == y[test_rows])
                chosen[metric] = svm.best_params_
            labels.append(y[test_rows])
            choices.append(chosen["accuracy"] != chosen["balanced_accuracy"])
        print(f"{data.name} | {rare or 'all'} | {held_out(right, labels)} | {sum(choices)} of {len(choices)}",
              flush=True)


if __name__ == "__main__":
    main()
