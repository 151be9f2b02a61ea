"""fp32 against bf16 for the VGG16 base: images/s side by side, and feature drift on real photos.

Run: .venv/bin/python bench/precision.py [--size 150] [--repeats 3]
Needs ../shared/weights/vgg16_notop.weights.h5 and ../shared/data/cats_and_dogs_filtered.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from features import FeatureExtractor, build_backbone, load_pixels, resolve_weights  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    photos = sorted((SHARED / "data" / "cats_and_dogs_filtered" / "validation" / "dogs").iterdir())[:32]
    pixels = np.stack([load_pixels(p, args.size) for p in photos]).astype("float32")
    weights = resolve_weights(str(SHARED / "weights" / "vgg16_notop.weights.h5"))
    extractors = {p: FeatureExtractor(build_backbone(args.size, "avg", weights, precision=p)) for p in ("fp32", "bf16")}
    features = {p: extract(pixels) for p, extract in extractors.items()}  # also warms each graph up
    rates = {p: [] for p in extractors}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        for precision, extract in extractors.items():
            started = time.perf_counter()
            extract(pixels)
            rates[precision].append(len(pixels) / (time.perf_counter() - started))
    a, b = features["fp32"], features["bf16"]
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"VGG16 base, {args.size} px, batch {len(pixels)}, {args.repeats} interleaved repeats")
    print("| precision | images/s median | min-max | ratio to fp32 |")
    print("|---|---|---|---|")
    base = statistics.median(rates["fp32"])
    for precision, values in rates.items():
        median = statistics.median(values)
        print(f"| {precision} | {median:.1f} | {min(values):.1f}-{max(values):.1f} | {median / base:.2f}x |")
    print(f"min cosine bf16 vs fp32 over {len(pixels)} real photos: {cosine.min():.6f}")


if __name__ == "__main__":
    main()
