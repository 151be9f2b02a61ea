"""Logistic regression's input normalisation and column groups, on every image and on few a class.

Run: .venv/bin/python bench/normalization.py [--data DIR ...] [--per-class 0 20 60] [--cv 2]

For each data set (default: the three shared sets), builds (or reuses) a `--pooling blocks` store
with `bench/accuracy.py`'s `build_store` (real weights, 224 px), then fits one logistic regression per
configuration (C chosen from the logreg head's grid by 3-fold grouped cross-validation on the rows
it is fitted on) and scores it. Two ways to score:

- validation (the default): fitted on the training rows, scored on every validation image.
  ``--per-class N`` draws N training images a class (seeds 0, 1, 2; 0: every image) to show the
  small-data case.
- ``--cv R``: paired cross-validation over training and validation images pooled (5 folds grouped
  by source image, repeated R times with new folds; ``--per-class N`` draws N images a class from
  each fold's training part): every configuration predicts every image the same number of times,
  so the difference to the first configuration (or ``--baseline``) comes with its standard error, far tighter than a
  validation split of 120 images allows.

Configurations (block 5 average and max: the default pooling's columns):

- ``b5 avgmax, none``: logreg before sqrt_l2 was its default (clipped and standardised);
- ``b5 avgmax, sqrt_l2 + std``: the first sqrt_l2 default (signed square root + L2 per group, then
  clipped and standardised);
- ``b5 avgmax, sqrt_l2``: the same, not standardised after it (the default on block 5 alone);
- ``b4+b5 avgmax, sqrt_l2``: blocks 4 and 5, as the plain script of issue 22;
- ``b5 or b4+b5, sqrt_l2``: today's default on a ``blocks`` store, the groups searched with C;
- ``b3+b4+b5 avgmax, sqrt_l2``, ``b4 avgmax, sqrt_l2``: block 3's columns beside them, block 4's alone;
- ``b4+b5 avg, sqrt_l2``, ``b5 or b4+b5 avg, sqrt_l2``: average pooling alone, without the max.

``--configs`` runs some of them (the first named is the baseline unless ``--baseline`` says otherwise).

Prints one line per data set, size and configuration; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedGroupKFold
from sklearn.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import SHARED, build_store, store_options  # noqa: E402  (bench/ is not a package)

from features import FeatureStore  # noqa: E402
from heads import LogRegHead  # noqa: E402
from heads._sklearn import SCALING_STEPS, ColumnGroups, scaling_steps, true_class_log_loss  # noqa: E402
from pipeline.runs import BLOCK5, COLUMN_CHOICES  # noqa: E402

DATASETS = [SHARED / "data" / name for name in ("dtd_6", "monkeys_10", "cats_and_dogs_filtered")]
# name -> (column groups, searched when more than one; normalisation; the scaling steps after it:
# those of which normalisation)
CONFIGS = {
    "b5 avgmax, none": ([BLOCK5], "none", "none"),
    "b5 avgmax, sqrt_l2 + std": ([BLOCK5], "sqrt_l2", "none"),
    "b5 avgmax, sqrt_l2": ([BLOCK5], "sqrt_l2", "sqrt_l2"),
    "b4+b5 avgmax, sqrt_l2": ([COLUMN_CHOICES[1]], "sqrt_l2", "sqrt_l2"),
    "b5 or b4+b5, sqrt_l2": (list(COLUMN_CHOICES), "sqrt_l2", "sqrt_l2"),
    "b3+b4+b5 avgmax, sqrt_l2": (["block3_avg+block3_max+" + COLUMN_CHOICES[1]], "sqrt_l2", "sqrt_l2"),
    "b4 avgmax, sqrt_l2": (["block4_avg+block4_max"], "sqrt_l2", "sqrt_l2"),
    "b4+b5 avg, sqrt_l2": (["block4_avg+block5_avg"], "sqrt_l2", "sqrt_l2"),
    "b5 or b4+b5 avg, sqrt_l2": (["block5_avg", "block4_avg+block5_avg"], "sqrt_l2", "sqrt_l2"),
}


def fit_logreg(store: FeatureStore, config: tuple, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Pipeline:
    """``config``'s pipeline with C (and the column groups, when it offers more than one) chosen as
    the logreg head chooses them (its grid, its metric) by 3-fold grouped CV."""
    columns, normalize, scaling = config
    steps = [("groups", ColumnGroups(store.column_groups, columns[0], normalize)),
             *zip(SCALING_STEPS, scaling_steps(scaling)), ("model", LogisticRegression(max_iter=3000))]
    grid = {"model__C": LogRegHead.default_search_space["C"], "groups__columns": columns}
    search = GridSearchCV(Pipeline(steps), grid, cv=GroupKFold(3), n_jobs=-1, scoring=true_class_log_loss)
    return search.fit(X, y, groups=groups).best_estimator_


def fit_and_score(store: FeatureStore, config: tuple, train: dict, rows: np.ndarray, validation: dict) -> float:
    model = fit_logreg(store, config, train["features"][rows], train["labels"][rows], train["groups"][rows])
    return float((model.predict(validation["features"]) == validation["labels"]).mean())


def paired_cv(store: FeatureStore, train: dict, validation: dict, repeats: int, per_class: int,
              configs: dict) -> dict:
    """``configs``' name -> (whether each held-out image was predicted right, mean log loss, the
    folds that used block 4 out of all), over
    ``repeats`` grouped 5-fold splits of training and validation images pooled (the same folds for each)."""
    X, y, groups = pooled(train, validation)
    right = {name: [] for name in configs}
    log_proba = {name: [] for name in configs}  # of each held-out image's true class
    with_block4 = {name: 0 for name in configs}  # folds whose fit used block 4's columns
    for fit_rows, test_rows in paired_folds(y, groups, repeats, per_class):
        for name, config in configs.items():
            model = fit_logreg(store, config, X[fit_rows], y[fit_rows], groups[fit_rows])
            right[name].append(model.predict(X[test_rows]) == y[test_rows])
            log_proba[name].append(true_class_log_loss(model, X[test_rows], y[test_rows]) * len(test_rows))
            with_block4[name] += "block4" in model.named_steps["groups"].columns
    folds = 5 * repeats
    return {name: (np.concatenate(right[name]), -np.sum(log_proba[name]) / len(y) / repeats,
                   f"{with_block4[name]}/{folds}") for name in configs}


def paired_folds(y: np.ndarray, groups: np.ndarray, repeats: int, per_class: int):
    """(fit rows, held-out rows) of ``repeats`` grouped, stratified 5-fold splits (``random_state``
    the repeat), ``per_class`` photos a class drawn from each fold's fit rows (0: every photo)."""
    for repeat in range(repeats):
        splitter = StratifiedGroupKFold(5, shuffle=True, random_state=repeat)
        for fold, (fit_rows, test_rows) in enumerate(splitter.split(y, y, groups)):
            if per_class:
                fit_rows = fit_rows[draws({"labels": y[fit_rows], "groups": groups[fit_rows]}, per_class, [fold])[0]]
            yield fit_rows, test_rows


def pooled(train: dict, validation: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation rows as one (features, labels, groups), validation's groups
    numbered after training's."""
    X = np.concatenate([train["features"], validation["features"]])
    y = np.concatenate([train["labels"], validation["labels"]])
    return X, y, np.concatenate([train["groups"], validation["groups"] + train["groups"].max() + 1])


def pooled_store(data: Path, args) -> tuple[FeatureStore, np.ndarray, np.ndarray, np.ndarray]:
    """``data``'s `blocks` store (built or reused by ``build_store``) and its training and
    validation photos pooled (``pooled``, no augmented passes)."""
    store = FeatureStore(args.cache / build_store(data, "blocks", args)["key"])
    return store, *pooled(split_with_groups(store, "train", passes=False),
                          split_with_groups(store, "validation", passes=False))


def split_with_groups(store: FeatureStore, split: str, passes: bool) -> dict:
    """``store.split_arrays(split)`` with each row's source image as ``groups``."""
    arrays = store.split_arrays(split, passes=passes)
    arrays["groups"] = store.source_groups(arrays["sources"])
    return arrays


def paired_difference(correct: np.ndarray, baseline: np.ndarray) -> str:
    """Points of accuracy of ``correct`` over ``baseline`` (per image), ± the standard error."""
    difference = correct - baseline
    return f"{100 * difference.mean():+.1f} ± {100 * difference.std() / np.sqrt(len(difference)):.1f} pts"


def draws(train: dict, per_class: int, seeds=(0, 1, 2)) -> list[np.ndarray]:
    """Row indices: every row (0), else ``per_class`` images a class for each of ``seeds``."""
    if per_class == 0:
        return [np.arange(len(train["labels"]))]
    labels, groups = train["labels"], train["groups"]
    chosen = []
    for seed in seeds:
        generator = np.random.default_rng(seed)
        images = [generator.choice(np.unique(groups[labels == label]), min(per_class, len(np.unique(groups[labels == label]))),
                                   replace=False) for label in np.unique(labels)]
        chosen.append(np.flatnonzero(np.isin(groups, np.concatenate(images))))
    return chosen


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    store_options(parser, DATASETS)
    parser.add_argument("--per-class", type=int, nargs="+", default=[0, 20, 60])
    parser.add_argument("--cv", type=int, default=0, metavar="R",
                        help="paired 5-fold CV on training and validation pooled, R repeats (default 0: validation)")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                        help="the configurations to run (default: all)")
    parser.add_argument("--baseline", choices=list(CONFIGS),
                        help="the configuration --cv's differences are taken against (default: the first run)")
    args = parser.parse_args(argv)
    baseline = args.baseline or args.configs[0]
    configs = {name: CONFIGS[name] for name in dict.fromkeys([baseline, *args.configs])}
    args.cache.mkdir(parents=True, exist_ok=True)
    for data in args.data:
        store = FeatureStore(args.cache / build_store(data, "blocks", args)["key"])
        train = split_with_groups(store, "train", passes=not args.cv)  # pooled CV: one row an image
        validation = split_with_groups(store, "validation", passes=False)
        for per_class in args.per_class:
            if args.cv:
                print_paired(data.name, per_class, paired_cv(store, train, validation, args.cv, per_class, configs), baseline)
                continue
            samples = draws(train, per_class)
            for name, config in configs.items():
                accuracies = [fit_and_score(store, config, train, rows, validation) for rows in samples]
                print(f"{data.name} | {per_class or 'all'} | {name} | {np.mean(accuracies):.3f} | "
                      f"{', '.join(f'{a:.3f}' for a in accuracies)}", flush=True)


def print_paired(name: str, per_class: int, scores: dict, baseline: str) -> None:
    """Accuracy per configuration, its difference to ``baseline``'s with the standard error, log
    loss, the folds that used block 4."""
    first = scores[baseline][0].astype(float)
    for config, (correct, log_loss, with_block4) in scores.items():
        print(f"{name} | {per_class or 'all'} | {config} | {correct.mean():.3f} | {paired_difference(correct, first)} | "
              f"log loss {log_loss:.3f} | block 4 in {with_block4} folds", flush=True)


if __name__ == "__main__":
    main()
