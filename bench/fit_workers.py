"""Where a small scikit-learn fit should run: on joblib's worker processes or in this process.

Run: .venv/bin/python bench/fit_workers.py [--rows 40 200 800 2400] [--columns 2560] [--classes 4]

For each row count, fits ``LogRegHead`` and ``SVMHead`` with their default search (3 grouped
folds, two rows a group) on random features in a fresh process each, three ways: on two joblib
workers (``n_jobs=2``, the start of the workers included, as a CLI call pays it), in process on
every BLAS thread, and in process on one BLAS thread (what ``heads._sklearn.fit_workers`` chooses
below ``IN_PROCESS_VALUES``). Prints one table of seconds; writes nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One fit in a fresh interpreter; prints its seconds. The threshold is lowered or lifted so that the
# head itself runs the way asked (in process with n_jobs=2, it limits BLAS to one thread).
FIT = """
import sys, time
import numpy as np
import heads._sklearn
from heads import LogRegHead, SVMHead
rows, columns, classes, head, way = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rng = np.random.default_rng(0)
y = np.arange(rows) % classes
X = (rng.random((rows, columns)) + y[:, None] * 0.01 * rng.random(columns)).astype("float32")
head_class = {"logreg": LogRegHead, "svm": SVMHead}[head]
heads._sklearn.IN_PROCESS_VALUES = 0 if way == "workers" else X.size + 1
n_jobs = 1 if way == "every thread" else 2  # n_jobs=1, asked for: in process, BLAS left alone
started = time.perf_counter()
head = head_class(n_jobs=n_jobs, search_space=head_class.default_search_space).fit(X, y, np.arange(rows) // 2)
assert head.n_jobs_ == (2 if way == "workers" else 1)
print(time.perf_counter() - started)
"""
WAYS = ("workers", "every thread", "one thread")


def seconds(rows: int, columns: int, classes: int, head: str, way: str) -> float:
    result = subprocess.run([sys.executable, "-c", FIT, str(rows), str(columns), str(classes), head, way],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[40, 200, 800, 2400])
    parser.add_argument("--columns", type=int, default=2560)
    parser.add_argument("--classes", type=int, default=4)
    args = parser.parse_args()
    print(f"{args.columns} columns, {args.classes} classes; seconds per fit (search and final fit)\n")
    print("| rows | values | " + " | ".join(f"{head} {way}" for head in ("logreg", "svm") for way in WAYS) + " |")
    print("|---" * (2 + 2 * len(WAYS)) + "|")
    for rows in args.rows:
        cells = [f"{seconds(rows, args.columns, args.classes, head, way):.2f}"
                 for head in ("logreg", "svm") for way in WAYS]
        print(f"| {rows:,} | {rows * args.columns:,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
