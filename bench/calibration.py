"""int8 calibration: where its time and memory go, and how far its features drift from fp32.

Run one configuration per process (peak memory is per process):
  .venv/bin/python bench/calibration.py --data ../shared/data/cats_and_dogs_filtered --count 64 --batch 4
Prints, per stage, seconds and the process's resident memory (now and peak), then the cosine
of int8 to fp32 features (average- and max-pooled, each photo's lower cosine, as the drift guard
takes it) on --check photos of --split spread evenly (fp32 features cached in --scratch).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
STARTED = time.perf_counter()
STAGES = []


def rss_mib() -> tuple[float, float]:
    current = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))
    return current / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage(name: str, since: float) -> float:
    now = time.perf_counter()
    current, peak = rss_mib()
    STAGES.append({"stage": name, "seconds": round(now - since, 2), "rss_mib": round(current), "peak_mib": round(peak)})
    print(f"{name:<28} {now - since:7.1f} s   RSS {current:7.0f} MiB   peak {peak:7.0f} MiB", flush=True)
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", default=str(ROOT.parent / "shared" / "weights" / "vgg16_notop.weights.h5"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--count", type=int, default=64, help="calibration images")
    parser.add_argument("--batch", type=int, default=4, help="calibration batch size")
    parser.add_argument("--calibration-size", type=int, help="side of the calibration images (default: as stores do)")
    parser.add_argument("--pooling", default="none", help="pooling inside the quantized model (none: as stores do)")
    parser.add_argument("--check", type=int, default=256, help="photos for the drift check (0: none)")
    parser.add_argument("--split", default="validation", help="the split checked, or all")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bottleneck-calibration"))
    parser.add_argument("--out", type=Path, help="append the result as one JSON line here")
    args = parser.parse_args()

    since = STARTED
    import numpy as np
    importlib.import_module("openvino")
    importlib.import_module("nncf")
    since = stage("import openvino, nncf", since)
    from features import BackboneSpec, load_pixels, resolve_weights, scan_dataset
    from features.calibration import calibration_batches, calibration_image_size, calibration_sources, quantize_int8
    from features.drift import pooled_cosines
    from features.engines import open_engine
    from features.engines.openvino_engine import OpenVinoEngine
    weights = resolve_weights(args.weights)
    # fp32 on Keras: the reference; int8 on OpenVINO: what is measured (average and max pooled)
    fp32_spec = BackboneSpec(weights=weights, image_size=args.size, pooling="avgmax", seed=0, batch_size=32)
    spec = dataclasses.replace(fp32_spec, precision="int8", engine="openvino", calibration_images=args.count)
    dataset = scan_dataset(args.data)
    since = stage("weights hash, data scan", since)
    side = args.calibration_size or calibration_image_size(args.size)
    batches = calibration_batches(dataset, calibration_sources(dataset, args.count), side, args.batch)
    since = stage(f"decode {args.count} images at {side} px", since)
    quantized = quantize_int8(spec, batches, pooling=args.pooling)
    del batches
    since = stage(f"graph + nncf.quantize (batch {args.batch})", since)
    engine = OpenVinoEngine(quantized, spec, pool_maps=args.pooling == "none")  # maps out: pooled here
    since = stage("compile", since)
    result = {"data": str(args.data), "size": args.size, "calibration_size": side, "count": args.count, "batch": args.batch,
              "pooling_in_model": args.pooling, "stages": STAGES}
    if args.check:
        photos = dataset.indices(args.split) if args.split != "all" else list(range(len(dataset.sources)))
        photos = photos[:: max(1, len(photos) // args.check)][:args.check]
        pixels = np.stack([load_pixels(dataset.root / dataset.sources[i].path, args.size) for i in photos])
        pixels = pixels.astype(np.float32)
        int8 = np.concatenate([engine(pixels[i:i + 32]) for i in range(0, len(pixels), 32)])
        since = stage(f"int8 on {len(pixels)} images", since)
        reference = args.scratch / f"fp32-avgmax-{args.data.name}-{args.split}-{args.size}-{len(pixels)}.npy"
        if reference.is_file():
            fp32 = np.load(reference)
        else:
            keras_engine = open_engine(fp32_spec)
            fp32 = np.concatenate([keras_engine(pixels[i:i + 32]) for i in range(0, len(pixels), 32)])
            reference.parent.mkdir(parents=True, exist_ok=True)
            np.save(reference, fp32)
            since = stage(f"fp32 on {len(pixels)} images", since)
        cosine = np.min(list(pooled_cosines(fp32, int8, {"avg": [0, 512], "max": [512, 1024]}).values()), axis=0)
        result["cosine"] = {"min": float(cosine.min()), "median": float(np.median(cosine)), "images": len(pixels),
                            "split": args.split}
        print(f"cosine to fp32 (the lower of avg and max pooled) on {len(pixels)} {args.split} photos: "
              f"min {cosine.min():.5f}, median {np.median(cosine):.6f}")
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
