"""Second-order (bilinear) pooling beside the `blocks` columns: what it adds on the same photos.

Run: .venv/bin/python bench/second_order.py [--data DIR ...] [--max-per-class N] [--cv 2]

Measures whether a compact bilinear column group is worth adding to the store. For each data set
(default: the three shared sets), runs the real VGG16 base (Keras, ``--precision``) once over its
training and validation photos and keeps, per photo: the average and max of block4_pool and
block5_pool (the `blocks` columns the heads choose from) and Random Maclaurin features of the
bilinear (second-order) pooling of block5_conv3 (14x14 at 224 px) and of block5_pool (7x7): two
fixed random +-1 projections of every position's 512 channels to D columns, multiplied and
averaged over positions, so that a dot product of two photos' columns estimates that of their
512x512 channel co-occurrence matrices. D is 8192; the first 2048 columns are the same estimator
at D = 2048: the projections and the pooling are the store's own (``features.bilinear``). The
features are cached in ``<cache>/second-order-<set>-<size>-<max per class>.npz``.

Each column group gets the heads' signed square root + L2 (``heads._sklearn.signed_sqrt_l2``); a combination weighs its groups equally.
A linear SVM (precomputed linear kernel, C searched by 4-fold grouped CV on the fit rows) is fitted
in the same grouped 5-fold splits of training and validation photos pooled (``--cv`` repeats), so
every photo is held out once a repeat under every combination, and each combination's difference
to the baseline (blocks 4 and 5, average and max) comes with its standard error.

Prints one line per data set and combination, and the extraction seconds; writes only the cache.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from normalization import DATASETS, paired_difference  # noqa: E402  (bench/ is not a package)

from features.bilinear import compact_bilinear  # noqa: E402
from features.dataset import scan_dataset  # noqa: E402
from features.images import load_pixels  # noqa: E402
from heads._sklearn import signed_sqrt_l2  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "vgg16_notop.weights.h5"
MAPS = ("block4_pool", "block5_conv3", "block5_pool")
BASELINE = "b4+b5 avgmax"
COMBINATIONS = {
    BASELINE: ["b4_avg", "b4_max", "b5_avg", "b5_max"],
    "b5_conv3 bilinear 8192": ["b5conv_rm"],
    "+ b5_conv3 bilinear 8192": ["b4_avg", "b4_max", "b5_avg", "b5_max", "b5conv_rm"],
    "+ b5_conv3 bilinear 2048": ["b4_avg", "b4_max", "b5_avg", "b5_max", "b5conv_rm2048"],
    "+ b5_pool bilinear 8192": ["b4_avg", "b4_max", "b5_avg", "b5_max", "b5pool_rm"],
}
C_GRID = [0.01, 0.1, 1, 10, 100]


def photos(root: Path, max_per_class: int) -> list[tuple[str, int, str, int]]:
    """(path, class index, split, group) of the set's photos, at most ``max_per_class`` a class and
    split; copies of the same bytes in one class share a group (held out together)."""
    dataset = scan_dataset(root)
    group = {index: min(twins) for twins in dataset.twins for index in twins}
    chosen, counts = [], {}
    for index, source in enumerate(dataset.sources):
        key = (source.label, source.split)
        counts[key] = counts.get(key, 0) + 1
        if not max_per_class or counts[key] <= max_per_class:
            chosen.append((str(root / source.path), source.label, source.split, group.get(index, index)))
    return chosen


def extract(root: Path, size: int, precision: str, max_per_class: int, batch: int = 16) -> dict:
    """Every column group of ``root``'s photos, from one pass of the base over each photo."""
    import keras
    from keras.applications import vgg16

    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    base = vgg16.VGG16(include_top=False, weights=str(WEIGHTS), input_shape=(size, size, 3))
    model = keras.Model(base.inputs, [base.get_layer(name).output for name in MAPS])
    listed = photos(root, max_per_class)
    columns = {name: [] for name in ("b4_avg", "b4_max", "b5_avg", "b5_max", "b5conv_rm", "b5pool_rm")}
    started = time.perf_counter()
    for start in range(0, len(listed), batch):
        pixels = np.stack([load_pixels(path, size) for path, *_ in listed[start:start + batch]])
        block4, block5_conv3, block5 = (np.asarray(maps, np.float32)
                                        for maps in model.predict(vgg16.preprocess_input(pixels), verbose=0))
        for name, maps in (("b4", block4), ("b5", block5)):
            columns[f"{name}_avg"].append(maps.mean(axis=(1, 2)))
            columns[f"{name}_max"].append(maps.max(axis=(1, 2)))
        columns["b5conv_rm"].append(compact_bilinear(block5_conv3))
        columns["b5pool_rm"].append(compact_bilinear(block5))
        print(f"\r{root.name}: {start + len(pixels)}/{len(listed)} photos", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    features = {name: np.concatenate(parts) for name, parts in columns.items()}
    features["b5conv_rm2048"] = features["b5conv_rm"][:, :2048]
    labels, splits, groups = (np.array(values) for values in list(zip(*listed))[1:])
    return {**features, "labels": labels, "splits": splits, "groups": groups, "seconds": time.perf_counter() - started}


def linear_kernel(features: dict, groups: list[str]) -> np.ndarray:
    """Photo x photo dot products of the groups side by side, each normalised, weighed equally."""
    X = np.hstack([signed_sqrt_l2(features[group]) for group in groups]) / np.sqrt(len(groups))
    return X @ X.T


def paired_scores(features: dict, combinations: dict, repeats: int) -> dict:
    """Combination -> whether each held-out photo was right, over ``repeats`` grouped 5-fold splits;
    ``combinations`` maps a name to its column groups."""
    y, photo_ids = features["labels"], features["groups"]
    kernels = {name: linear_kernel(features, groups) for name, groups in combinations.items()}
    right = {name: [] for name in combinations}
    for repeat in range(repeats):
        for fit, held_out in StratifiedGroupKFold(5, shuffle=True, random_state=repeat).split(y, y, photo_ids):
            inner = StratifiedGroupKFold(4, shuffle=True, random_state=0)
            for name, K in kernels.items():
                search = GridSearchCV(SVC(kernel="precomputed"), {"C": C_GRID}, cv=inner)
                search.fit(K[np.ix_(fit, fit)], y[fit], groups=photo_ids[fit])
                right[name].append(search.predict(K[np.ix_(held_out, fit)]) == y[held_out])
    return {name: np.concatenate(parts).astype(float) for name, parts in right.items()}


def paired_cv_parser(description: str) -> argparse.ArgumentParser:
    """The options of a paired cross-validation over cached features: sets, photos, repeats, cache."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, nargs="+", default=[d for d in DATASETS if d.is_dir()])
    parser.add_argument("--max-per-class", type=int, default=0, help="photos a class and split (default 0: all)")
    parser.add_argument("--cv", type=int, default=2, metavar="R", help="repeats of the 5-fold split (default 2)")
    parser.add_argument("--cache", type=Path, default=Path("cache"))
    return parser


def parse_paired_cv(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """``parser``'s arguments, once the weights are there and the cache folder is."""
    args = parser.parse_args(argv)
    if not WEIGHTS.is_file():
        raise SystemExit(f"needs the VGG16 weights at {WEIGHTS}")
    args.cache.mkdir(parents=True, exist_ok=True)
    return args


def main(argv=None) -> None:
    parser = paired_cv_parser(__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    args = parse_paired_cv(parser, argv)
    print("set | photos | combination | columns | accuracy | against the baseline | extraction s")
    for data in args.data:
        cached = args.cache / f"second-order-{data.name}-{args.image_size}-{args.max_per_class}.npz"
        if not cached.is_file():
            np.savez(cached, **extract(data, args.image_size, args.precision, args.max_per_class))
        features = dict(np.load(cached))
        scores = paired_scores(features, COMBINATIONS, args.cv)
        for name, right in scores.items():
            columns = sum(features[group].shape[1] for group in COMBINATIONS[name])
            print(f"{data.name} | {len(right) // args.cv} | {name} | {columns} | {right.mean():.3f} | "
                  f"{paired_difference(right, scores[BASELINE])} | {float(features['seconds']):.0f}", flush=True)


if __name__ == "__main__":
    main()
