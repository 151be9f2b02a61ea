"""Mirror views against one view: logistic regression's held-out accuracy on the same photos.

Run: .venv/bin/python bench/views.py [--data DIR ...] [--per-class 0 20] [--cv 2]

For each data set (default: the three shared sets), builds (or reuses) its `blocks` store and its
`blocks --views 2` store (each photo's features averaged with its mirror's) with `bench/accuracy.py`'s
`build_store`, then fits the logreg head's default (signed square root + L2, block 5 or blocks 4
and 5 and C searched by 3-fold grouped CV, as `bench/normalization.py`'s ``b5 or b4+b5, sqrt_l2``)
on each store in the same grouped 5-fold splits of training and validation photos pooled (``--cv``
repeats; ``--per-class N``: N photos a class drawn from each fold's training part). Every photo is
held out once a repeat under both stores, so the difference comes with its standard error.

Prints one line per data set and size; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import build_store, store_options  # noqa: E402  (bench/ is not a package)
from normalization import CONFIGS, DATASETS, fit_logreg, paired_difference, paired_folds, pooled, split_with_groups  # noqa: E402

from features import FeatureStore  # noqa: E402
from heads._sklearn import true_class_log_loss  # noqa: E402

LOGREG_DEFAULT = CONFIGS["b5 or b4+b5, sqrt_l2"]
VIEWS = {"one view": "blocks", "views 2": "blocks-views2"}  # name -> bench/accuracy.py's store


def pooled_rows(store: FeatureStore, sources: np.ndarray | None = None) -> dict:
    """The store's training and validation rows pooled (``pooled``), in the order of ``sources``
    when given (another store's photos, matched by source path)."""
    train, validation = (split_with_groups(store, split, passes=False) for split in ("train", "validation"))
    X, y, groups = pooled(train, validation)
    rows = {"features": X, "labels": y, "groups": groups,
            "sources": np.concatenate([train["sources"], validation["sources"]])}
    if sources is not None:
        position = {source: index for index, source in enumerate(rows["sources"])}
        order = np.array([position[source] for source in sources])
        rows = {name: values[order] for name, values in rows.items()}
    return rows


def aligned_rows(stores: dict) -> dict:
    """Name -> each store's ``pooled_rows``, every store's in the first one's photo order."""
    first, *others = stores
    reference = pooled_rows(stores[first])
    rows = {first: reference, **{name: pooled_rows(stores[name], reference["sources"]) for name in others}}
    if any((data["labels"] != reference["labels"]).any() for data in rows.values()):
        raise SystemExit("the stores disagree on the photos' labels")
    return rows


def paired_views(stores: dict, rows: dict, repeats: int, per_class: int) -> dict:
    """Name -> (whether each held-out photo was predicted right, mean log loss) over ``repeats``
    grouped 5-fold splits of ``rows`` (``aligned_rows``), the same folds for every store."""
    reference = rows[next(iter(rows))]
    y, groups = reference["labels"], reference["groups"]
    right = {name: [] for name in stores}
    log_loss = {name: 0.0 for name in stores}
    for fit_rows, test_rows in paired_folds(y, groups, repeats, per_class):
        for name, store in stores.items():
            X = rows[name]["features"]
            model = fit_logreg(store, LOGREG_DEFAULT, X[fit_rows], y[fit_rows], groups[fit_rows])
            right[name].append(model.predict(X[test_rows]) == y[test_rows])
            log_loss[name] -= true_class_log_loss(model, X[test_rows], y[test_rows]) * len(test_rows)
    return {name: (np.concatenate(right[name]), log_loss[name] / len(y) / repeats) for name in stores}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    store_options(parser, DATASETS)
    parser.add_argument("--per-class", type=int, nargs="+", default=[0, 20])
    parser.add_argument("--cv", type=int, default=2, metavar="R", help="repeats of the 5-fold split (default 2)")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    for data in args.data:
        stores = {name: FeatureStore(args.cache / build_store(data, store, args)["key"]) for name, store in VIEWS.items()}
        rows = aligned_rows(stores)  # read once, for every size
        for per_class in args.per_class:
            scores = paired_views(stores, rows, args.cv, per_class)
            (one, one_loss), (two, two_loss) = scores.values()
            print(f"{data.name} | {per_class or 'all'} | {one.mean():.3f} / {one_loss:.3f} | {two.mean():.3f} / "
                  f"{two_loss:.3f} | {paired_difference(two.astype(float), one.astype(float))}", flush=True)


if __name__ == "__main__":
    main()
