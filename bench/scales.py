"""Other scales and the photo's aspect beside the 224 px squash: what each way of showing a photo adds.

Run: .venv/bin/python bench/scales.py [--data DIR ...] [--max-per-class N] [--cv 2]

Textures and fine detail are scale-dependent, and a photo squashed to 224 px shows block 5 its
texture at one scale only. For each data set (default: the three shared sets), runs the real VGG16
base (Keras, float32, one model for every input size) over its training and validation photos and
keeps, per photo and per way of showing it, the average and max of block4_pool and block5_pool (the
`blocks` columns the heads choose from):

- ``224``, ``448``: the photo squashed to that square size (the store's resize);
- ``crop 224``: its shorter side resized to 224 px, cut to the square at its centre;
- ``pad 224``: its longer side resized to 224 px, its aspect kept, centred on a square of ImageNet's
  mean colour;
- ``tiles 224``: its shorter side resized to 224 px, cut into the fewest 224 px squares that cover
  it (overlapping), each square's maps pooled and the squares' averages averaged, maxima maxed;
- ``short 224``, ``short 448``: its shorter side resized to that size, its aspect kept, the maps
  pooled over the whole (unsquashed) photo.

The features are cached in ``<cache>/scales-<set>-<max per class>.npz``; a way missing there is
added to it. Each column group gets the heads' signed square root + L2; a combination weighs its
groups equally, whether they come from one way or two. A linear SVM (precomputed linear kernel, C searched by 4-fold grouped CV on the fit
rows) is fitted in the same grouped 5-fold splits of training and validation photos pooled (``--cv``
repeats), so every photo is held out once a repeat under every combination, and each combination's
difference to the store's columns at 224 px comes with its standard error.

Prints one line per data set and combination, then each scale's extraction seconds; writes only
the cache.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from normalization import paired_difference  # noqa: E402  (bench/ is not a package)
from second_order import WEIGHTS, paired_cv_parser, paired_scores, parse_paired_cv, photos  # noqa: E402

from features.images import _to_rgb, load_pixels, open_regular  # noqa: E402

GROUPS = ("b4_avg", "b4_max", "b5_avg", "b5_max")
BASELINE = "224"
MEAN_RGB = (124, 117, 104)  # ImageNet's mean pixel, which preprocessing subtracts


def scale_groups(scale: str) -> list[str]:
    return [f"{scale} {group}" for group in GROUPS]


COMBINATIONS = {
    BASELINE: scale_groups("224"),
    "448": scale_groups("448"),
    "crop 224": scale_groups("crop 224"),
    "pad 224": scale_groups("pad 224"),
    "tiles 224": scale_groups("tiles 224"),
    "short 224": scale_groups("short 224"),
    "short 448": scale_groups("short 448"),
    "224 + 448": scale_groups("224") + scale_groups("448"),
    "224 + short 448": scale_groups("224") + scale_groups("short 448"),
    "mean of 224 and 448": scale_groups("mean 224 448"),
}


def upright(path: str) -> Image.Image:
    with open_regular(path) as file, Image.open(file) as image:
        return _to_rgb(ImageOps.exif_transpose(image))


def short_side(path: str, short: int) -> np.ndarray:
    """The photo, its shorter side resized to ``short``, its aspect kept."""
    image = upright(path)
    scale = short / min(image.size)
    size = (max(short, round(image.width * scale)), max(short, round(image.height * scale)))
    return np.asarray(image.resize(size, Image.BILINEAR), dtype=np.uint8)


def centre_crop(path: str, size: int) -> np.ndarray:
    """The photo, its shorter side resized to ``size``, cut to the ``size`` square at its centre."""
    pixels = short_side(path, size)
    top, left = (pixels.shape[0] - size) // 2, (pixels.shape[1] - size) // 2
    return pixels[top:top + size, left:left + size]


def tiles(path: str, size: int) -> np.ndarray:
    """The photo, its shorter side resized to ``size``, as the fewest ``size`` squares that cover
    its longer side, evenly spaced (overlapping): (squares, size, size, 3)."""
    pixels = short_side(path, size)
    long_axis = int(pixels.shape[1] > pixels.shape[0])
    length = pixels.shape[long_axis]
    count = -(-length // size)
    starts = np.linspace(0, length - size, count).round().astype(int)
    return np.stack([pixels[:, start:start + size] if long_axis else pixels[start:start + size] for start in starts])


def padded(path: str, size: int) -> np.ndarray:
    """The photo, its longer side resized to ``size``, centred on a ``size`` square of ImageNet's
    mean colour (zero once preprocessed)."""
    image = upright(path)
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), MEAN_RGB)
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


# way of showing a photo -> (its pixels, whether every photo comes out the same size: batched)
SCALES = {
    "224": (lambda path: load_pixels(path, 224), True),
    "448": (lambda path: load_pixels(path, 448), True),
    "crop 224": (lambda path: centre_crop(path, 224), True),
    "pad 224": (lambda path: padded(path, 224), True),
    "tiles 224": (lambda path: tiles(path, 224), False),
    "short 224": (lambda path: short_side(path, 224), False),
    "short 448": (lambda path: short_side(path, 448), False),
}


def pooled(maps: list[np.ndarray]) -> dict:
    """Block 4's and block 5's average and max over every position, one row a photo."""
    block4, block5 = (np.asarray(values, np.float32) for values in maps)
    return {"b4_avg": block4.mean(axis=(1, 2)), "b4_max": block4.max(axis=(1, 2)),
            "b5_avg": block5.mean(axis=(1, 2)), "b5_max": block5.max(axis=(1, 2))}


def over_squares(columns: dict) -> dict:
    """One photo's pooled rows of its squares as one row: averages averaged, maxima maxed."""
    return {group: (values.max(axis=0) if group.endswith("_max") else values.mean(axis=0))[None]
            for group, values in columns.items()}


def extract(root: Path, max_per_class: int, cached: dict, batch: int = 8) -> dict:
    """``cached`` with the column groups of every scale it lacks, from ``root``'s photos."""
    import keras
    from keras.applications import vgg16

    base = vgg16.VGG16(include_top=False, weights=str(WEIGHTS), input_shape=(None, None, 3))
    model = keras.Model(base.inputs, [base.get_layer(name).output for name in ("block4_pool", "block5_pool")])
    listed = photos(root, max_per_class)
    features = dict(cached)
    for scale, (pixels_of, batched) in SCALES.items():
        if f"seconds {scale}" in features:
            continue
        started, parts, step = time.perf_counter(), [], batch if batched else 1
        for start in range(0, len(listed), step):
            if batched:
                pixels = np.stack([pixels_of(path) for path, *_ in listed[start:start + step]]).astype(np.float32)
                parts.append(pooled(model.predict_on_batch(vgg16.preprocess_input(pixels))))
            else:
                pixels = pixels_of(listed[start][0]).astype(np.float32)
                pixels = pixels if pixels.ndim == 4 else pixels[None]
                parts.append(over_squares(pooled(model(vgg16.preprocess_input(pixels), training=False))))
            print(f"\r{root.name} {scale}: {min(start + step, len(listed))}/{len(listed)}", end="", file=sys.stderr, flush=True)
        for group in GROUPS:
            features[f"{scale} {group}"] = np.concatenate([part[group] for part in parts])
        features[f"seconds {scale}"] = time.perf_counter() - started
    print(file=sys.stderr)
    labels, splits, groups = (np.array(values) for values in list(zip(*listed))[1:])
    return {**features, "labels": labels, "splits": splits, "groups": groups}


def with_means(features: dict) -> dict:
    """``features`` plus each group averaged over 224 and 448 px."""
    means = {f"mean 224 448 {group}": (features[f"224 {group}"] + features[f"448 {group}"]) / 2 for group in GROUPS}
    return {**features, **means}


def main(argv=None) -> None:
    args = parse_paired_cv(paired_cv_parser(__doc__.split("\n")[0]), argv)
    print("set | photos | combination | accuracy | against 224 px")
    for data in args.data:
        cached = args.cache / f"scales-{data.name}-{args.max_per_class}.npz"
        done = dict(np.load(cached)) if cached.is_file() else {}
        if any(f"seconds {scale}" not in done for scale in SCALES):
            np.savez(cached, **extract(data, args.max_per_class, done))
        features = with_means(dict(np.load(cached)))
        scores = paired_scores(features, COMBINATIONS, args.cv)
        for name, right in scores.items():
            print(f"{data.name} | {len(right) // args.cv} | {name} | {right.mean():.3f} | "
                  f"{paired_difference(right, scores[BASELINE])}", flush=True)
        spent = ", ".join(f"{key.removeprefix('seconds ')} {float(value):.0f} s"
                          for key, value in features.items() if key.startswith("seconds "))
        print(f"{data.name} extraction: {spent}", flush=True)

if __name__ == "__main__":
    main()
