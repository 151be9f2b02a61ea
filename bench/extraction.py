"""Stage one's speed against the tutorial recipe and against this machine's ceilings; heads at scale.

Run: make bench  (or .venv/bin/python bench/extraction.py --help)

Measures, in one run, interleaved over repeats (median and min-max):
- the peak of large matrix products in fp32, bf16 and int8 (the ceilings);
- images/s of the `model.predict` recipe and of every engine x precision, convnet-only on
  decoded arrays and end to end (JPEG files in, shards out through `features.extract`);
- time to fit each head on a 50,000 x 512 store, and peak RSS of extracting 2,000 and
  20,000 images (each in its own process);
- what a user waits for ("wall"): the whole `features` command, start-up and calibration
  included, in a fresh process with a fresh store, for every precision, the default (auto),
  an int8 store that reuses the cached calibration, and the recipe as a script; each at two
  photo counts (--wall-images, default 200 and 1,000), whence the marginal rate
  (images/s once running) and the fixed seconds; peak memory of each process.
Prints the tables with the goals marked and writes bench/results/<cpu>/<date>-<host>[-N].json
(a new file each run), where <cpu> names the CPU model (one folder per CPU); the CPU's model
name and the flags that decide the precision are in every result file and table. Uses the real weights and
photos from ../shared when present, random weights and generated JPEGs otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras.applications import vgg16  # noqa: E402

from features import ExtractConfig, StoreWriter, load_pixels, resolve_weights, scan_dataset  # noqa: E402
from features.backbone import build_backbone  # noqa: E402
from features.calibration import calibration_image_size, quantize_on  # noqa: E402
from features.engines import open_engine  # noqa: E402
from features.engines.openvino_engine import OpenVinoEngine  # noqa: E402
from features.extract import LocalExecutor, extract  # noqa: E402
from features.spec import (DEFAULT_CALIBRATION_IMAGES, INT8_CPU_FLAGS, BackboneSpec, cpu_flags,  # noqa: E402
                           engine_installed, native_precision)

SHARED = ROOT.parent / "shared"
# Goals for the default's whole command against the recipe: with int8 dot products (VNNI, AMX), else.
DEFAULT_GOAL_VNNI, DEFAULT_GOAL = 3.5, 2.5
PHOTOS = SHARED / "data" / "cats_and_dogs_filtered"
WEIGHTS = SHARED / "weights" / "vgg16_notop.weights.h5"
PATHS = [("keras", "fp32"), ("keras", "bf16"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8")]


def measured_paths() -> list[tuple[str, str]]:
    """The (engine, precision) paths this CPU runs natively: bf16 only where it multiplies bfloat16
    (elsewhere both engines emulate it, slower than fp32), OpenVINO only where installed."""
    native_bf16 = native_precision(cpu_flags()) == "bf16"
    return [(engine, precision) for engine, precision in PATHS
            if (precision != "bf16" or native_bf16) and (engine != "openvino" or engine_installed())]


def conv_flops(image_size: int) -> float:
    """Multiply-adds x2 of the VGG16 base's convolutions for one image."""
    spec = BackboneSpec(weights=resolve_weights("none"), image_size=image_size, pooling="avg")
    base = build_backbone(spec).get_layer("vgg16")  # the base alone: not the preprocessing layer
    total = 0
    for layer in base.layers:
        if isinstance(layer, keras.layers.Conv2D):
            h, w, c_out = layer.output.shape[1:]
            k_h, k_w, c_in, _ = layer.kernel.shape
            total += 2 * h * w * k_h * k_w * c_in * c_out
    return float(total)


def best_rate(run, work: float, repeats: int = 5) -> float:
    """Work per second of the fastest of ``repeats`` calls (after one warm-up)."""
    run()
    fastest = min(_seconds(run) for _ in range(repeats))
    return work / fastest


def _seconds(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


# Products chained in one probe: an engine converts its input to its own layout and precision
# and back at the ends of a model, which at AMX speeds cost as much as one product; VGG16 pays
# that once for 13 convolutions, so one product alone reads far under what the network reaches.
PROBE_DEPTH = 8


def ceilings(size: int = 2048, depth: int = PROBE_DEPTH) -> dict[str, dict[str, float]]:
    """Peak G(FL)OP/s per precision and probe: ``depth`` chained square matrix products
    (TensorFlow and OpenVINO) and, in OpenVINO, ``depth`` chained VGG-sized 3x3 convolutions,
    the only int8 product it exposes."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)  # keeps the chain's scale
    matmul_work = depth * 2.0 * size ** 3 / 1e9
    probes = {precision: {} for precision in ("fp32", "bf16", "int8")}
    for precision, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
        x, y = tf.constant(a, dtype), tf.constant(b, dtype)

        @tf.function
        def product():
            out = x
            for _ in range(depth):
                out = tf.matmul(out, y)
            return out

        probes[precision]["tensorflow matmul"] = best_rate(lambda: product().numpy(), matmul_work)
    if not engine_installed():
        return probes
    import nncf
    import openvino as ov
    from openvino import opset13 as ops

    batch, channels, side = 8, 256, 56
    images = rng.standard_normal((batch, channels, side, side)).astype(np.float32)
    kernel = (rng.standard_normal((channels, channels, 3, 3)) / np.sqrt(channels * 9)).astype(np.float32)
    conv_work = depth * 2.0 * batch * side * side * channels * channels * 9 / 1e9

    def chain(parameter, step):
        out = parameter
        for _ in range(depth):
            out = step(out)
        return ov.Model([out], [parameter])

    def matmul_model():
        return chain(ops.parameter([size, size], np.float32), lambda x: ops.matmul(x, ops.constant(b), False, False))

    def conv_model():
        return chain(ops.parameter(list(images.shape), np.float32),
                     lambda x: ops.convolution(x, ops.constant(kernel), [1, 1], [1, 1], [1, 1], [1, 1]))

    for name, build, data, work in (("matmul", matmul_model, a, matmul_work),
                                    ("3x3 conv", conv_model, images, conv_work)):
        for precision, hint in (("fp32", "f32"), ("bf16", "bf16"), ("int8", "f32")):
            model = build()
            if precision == "int8":
                model = nncf.quantize(model, nncf.Dataset([data]), subset_size=1)
            compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
            probes[precision][f"openvino {name}"] = best_rate(lambda: compiled(data), work)
    return probes


def photo_folder(target: Path, count: int) -> Path:
    """``count`` JPEGs in root/<class>/ (links to the shared photos, or generated ones)."""
    if PHOTOS.is_dir():
        for animal in ("cats", "dogs"):
            folder = target / animal
            folder.mkdir(parents=True)
            for source in sorted((PHOTOS / "train" / animal).iterdir())[:count // 2]:
                (folder / source.name).symlink_to(source)
        return target
    from PIL import Image
    rng = np.random.default_rng(0)
    for number in range(count):
        folder = target / ("a" if number % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(folder / f"{number}.jpg")
    return target


class Paths:
    """Every measured path at one image size, built once, each a callable that does the whole job."""

    def __init__(self, size: int, folder: Path, weights, batch_size: int = 32):
        self.size, self.weights, self.batch_size = size, weights, batch_size
        self.dataset = scan_dataset(folder)
        self.files = [folder / s.path for s in self.dataset.sources]
        self.pixels = np.stack([load_pixels(p, size) for p in self.files]).astype(np.float32)
        self.recipe_model = vgg16.VGG16(include_top=False, weights=weights.path, input_shape=(size, size, 3),
                                        pooling="avg")
        self.engines = {}
        self.calibration_seconds = None
        for engine, precision in measured_paths():
            self.engines[(engine, precision)] = self._engine(engine, precision)

    def spec(self, engine: str, precision: str) -> BackboneSpec:
        calibration = {"calibration_images": DEFAULT_CALIBRATION_IMAGES} if precision == "int8" else {}
        return BackboneSpec(weights=self.weights, image_size=self.size, pooling="avg", seed=0, precision=precision,
                            engine=engine, batch_size=self.batch_size, **calibration)

    def _engine(self, engine: str, precision: str):
        spec = self.spec(engine, precision)
        if precision != "int8":
            return open_engine(spec)
        started = time.perf_counter()  # as a store calibrates: no pooling in the model, pooled after
        model, _ = quantize_on(self.dataset, spec)
        self.calibration_seconds = time.perf_counter() - started
        return OpenVinoEngine(model, spec, pool_maps=True)

    def recipe_convnet(self):
        self.recipe_model.predict(vgg16.preprocess_input(self.pixels.copy()), batch_size=self.batch_size, verbose=0)

    def recipe_end_to_end(self, out: Path):
        """The tutorial way: keras.utils.load_img one file at a time, model.predict, np.save."""
        features = []
        for start in range(0, len(self.files), self.batch_size):
            batch = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(self.size, self.size)))
                              for p in self.files[start:start + self.batch_size]])
            features.append(self.recipe_model.predict(vgg16.preprocess_input(batch), verbose=0))
        np.save(out / "features.npy", np.concatenate(features))

    def cosines_to_keras_fp32(self) -> dict[tuple[str, str], dict]:
        """Per path, the min and mean cosine of each photo's (avg-pooled) features to Keras fp32's."""
        def features(engine):
            return np.concatenate([engine(self.pixels[i:i + self.batch_size])
                                   for i in range(0, len(self.pixels), self.batch_size)])

        reference = features(self.engines[("keras", "fp32")])
        drift = {}
        for key, engine in self.engines.items():
            out = features(engine)
            cosine = (reference * out).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(out, axis=1)
            drift[key] = {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean())}
        return drift

    def convnet(self, key):
        engine = self.engines[key]
        for start in range(0, len(self.pixels), self.batch_size):
            engine(self.pixels[start:start + self.batch_size])

    def end_to_end(self, key, out: Path):
        config = ExtractConfig(backbone=self.spec(*key))
        writer = StoreWriter.open(out / "store", {"key": "bench", "sources": [{"label": s.label, "split": s.split}
                                                                              for s in self.dataset.sources],
                                                  "feature_shape": [512]})
        extract(self.dataset, config, writer, executor=LocalExecutor(self.engines[key]))

    def jobs(self, scratch: Path) -> dict[str, callable]:
        def fresh():
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            return scratch

        jobs = {("recipe", "fp32", "convnet"): self.recipe_convnet,
                ("recipe", "fp32", "end to end"): lambda: self.recipe_end_to_end(fresh())}
        for key in self.engines:
            jobs[(*key, "convnet")] = lambda key=key: self.convnet(key)
            jobs[(*key, "end to end")] = lambda key=key: self.end_to_end(key, fresh())
        return jobs


def measure_paths(size: int, images: int, repeats: int, weights, scratch: Path) -> list[dict]:
    folder = photo_folder(scratch / f"photos-{size}", images)
    paths = Paths(size, folder, weights)
    jobs = paths.jobs(scratch / "out")
    for job in jobs.values():  # warm-up: graphs traced, kernels chosen, files cached
        job()
    seconds = {name: [] for name in jobs}
    for _ in range(repeats):  # interleaved: every path sees the same machine load
        for name, job in jobs.items():
            seconds[name].append(_seconds(job))
    cosines = paths.cosines_to_keras_fp32()
    rows = []
    for (engine, precision, scope), values in seconds.items():
        rates = [images / s for s in values]
        rows.append({"size": size, "engine": engine, "precision": precision, "scope": scope,
                     "median": statistics.median(rates), "min": min(rates), "max": max(rates),
                     **cosines.get((engine, precision), {})})
    rows.append({"size": size, "calibration_seconds": paths.calibration_seconds})
    return rows


def head_times(rows: int, scratch: Path) -> dict[str, dict]:
    """Fit each head (with its default search, not refitted on validation) on a synthetic store of
    ``rows`` x 512 features."""
    from features import Dataset, SourceFile, Weights
    from features.store import Shard
    from pipeline.runs import fit_run
    from features.manifest import new_manifest, store_key

    rng = np.random.default_rng(0)
    classes = 10
    centres = rng.gamma(2.0, 0.5, 512) + rng.normal(0, 0.15, (classes, 512))  # close classes: not separable
    folder = scratch / "heads-store"
    n_validation = rows // 10
    labels = np.concatenate([np.arange(rows) % classes, np.arange(n_validation) % classes])
    splits = ["train"] * rows + ["validation"] * n_validation
    sources = tuple(SourceFile(f"{i}.jpg", int(label), split, 0, 0)
                    for i, (label, split) in enumerate(zip(labels, splits)))
    dataset = Dataset(folder, tuple(str(c) for c in range(classes)), "splits", sources)
    config = ExtractConfig(backbone=BackboneSpec(weights=Weights(path=None, identity="synthetic")), shard_size=10000)
    manifest = new_manifest(dataset, config, store_key(dataset, config))
    writer = StoreWriter.open(folder, manifest)
    for split, start, stop in (("train", 0, rows), ("validation", rows, rows + n_validation)):
        for number, first in enumerate(range(start, stop, 10000)):
            index = np.arange(first, min(first + 10000, stop))
            features = np.maximum(centres[labels[index]] + rng.normal(0, 1.0, (len(index), 512)), 0)
            writer.write_shard(Shard(split, 0, number, tuple(index)), features.astype(np.float32),
                               labels[index].astype(np.int32), index, {})
    writer.finish()
    from features import FeatureStore
    store = FeatureStore(folder)
    times = {}
    for head in ("logreg", "svm", "dense"):
        started = time.perf_counter()
        run = fit_run(store, head, {}, scratch / "runs", final_fit="train")
        times[head] = {"seconds": time.perf_counter() - started, "accuracy": run.metrics["accuracy"],
                       "details": run.info["details"]}
    return times


def extraction_rss(counts: tuple[int, ...], scratch: Path) -> dict[int, float]:
    """Peak RSS (MiB) of `features` over ``count`` 32 px images, each count in a fresh process."""
    from PIL import Image
    originals = scratch / "rss-originals"
    rng = np.random.default_rng(0)
    for number in range(200):
        folder = originals / ("a" if number % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(folder / f"{number}.png")
    peaks = {}
    for count in counts:
        data = scratch / f"rss-{count}"
        for number in range(count):  # hard links: distinct files, no extra disk
            source = originals / ("a" if number % 2 else "b") / f"{number % 200}.png"
            target = data / source.parent.name / f"{number}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target)
        program = ("import sys; from pipeline.cli import app; sys.argv[0] = 'pipeline'\n"
                   "try:\n    app()\nexcept SystemExit:\n    pass\n"
                   # VmHWM, not ru_maxrss: Linux carries the parent's (this big process's) peak
                   # across fork and exec into ru_maxrss, which inflated earlier figures
                   "print('PEAK_KIB', next(int(l.split()[1]) for l in open('/proc/self/status') "
                   "if l.startswith('VmHWM')))")
        result = subprocess.run([sys.executable, "-c", program, "features", "--data", str(data), "--weights", "none",
                                 "--image-size", "32", "--cache", str(scratch / f"rss-cache-{count}")],
                                cwd=ROOT, capture_output=True, text=True, check=True)
        peaks[count] = int(result.stdout.split("PEAK_KIB")[1]) / 1024
    return peaks


RECIPE = """
import sys, time, numpy as np, keras
from pathlib import Path
from keras.applications import vgg16
folder, weights, size, out = Path(sys.argv[1]), sys.argv[2] or None, int(sys.argv[3]), Path(sys.argv[4])
files = sorted(p for p in folder.rglob("*") if p.is_file())
model = vgg16.VGG16(include_top=False, weights=weights, input_shape=(size, size, 3), pooling="avg")
features = []
for start in range(0, len(files), 32):
    batch = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size)))
                      for p in files[start:start + 32]])
    features.append(model.predict(vgg16.preprocess_input(batch), verbose=0))
np.save(out / "features.npy", np.concatenate(features))
"""
WALL_PATHS = ("recipe", "fp32 keras", "fp32", "bf16 keras", "bf16", "int8 fresh", "int8 cached", "auto")
WALL_ARGS = {"fp32 keras": ["--precision", "fp32", "--engine", "keras"],
             "bf16 keras": ["--precision", "bf16", "--engine", "keras"], "int8 fresh": ["--precision", "int8"],
             "int8 cached": ["--precision", "int8"]}  # else --precision <path>, engine auto


def wall_paths(asked=WALL_PATHS) -> tuple[str, ...]:
    """The recipe and the ``asked`` whole-command paths this CPU runs natively (bf16 only where
    native, as in ``measured_paths``)."""
    return tuple(p for p in WALL_PATHS if (p == "recipe" or p in asked)
                 and (not p.startswith("bf16") or native_precision(cpu_flags()) == "bf16"))


def run_timed(command: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of that process alone, its output) of ``command``.

    The peak is the child's own high-water mark (VmHWM), read while it runs: the rusage that
    wait returns would count this big process's memory too (Linux keeps a process's peak across
    fork and exec)."""
    import threading

    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    peak = [0]

    def watch():
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                peak[0] = max(peak[0], next(int(line.split()[1]) for line in status.read_text().splitlines()
                                            if line.startswith("VmHWM")))
            except (OSError, StopIteration, ValueError):
                pass
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = process.stdout.read()
    process.wait()
    seconds = time.perf_counter() - started
    watcher.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-2000:]}")
    return seconds, peak[0] / 1024, output


def wall_times(counts: tuple[int, ...], size: int, weights, scratch: Path, repeats: int,
               paths: tuple[str, ...]) -> list[dict]:
    """Whole-command wall time of every path at each photo count, each in a fresh process and
    store (the int8 calibration cache is cold for "int8 fresh" and "auto", warm for "int8
    cached", which is a second store, another pooling, on the same weights and size)."""
    rows = []
    for count in counts:
        if not (scratch / f"wall-photos-{count}").is_dir():
            photo_folder(scratch / f"wall-photos-{count}", count)
    for repeat in range(repeats):
        for path in paths:  # interleaved: paths take turns, and each path's counts run back to back
            for count in counts:
                folder = scratch / f"wall-photos-{count}"
                out = scratch / f"wall-{path.replace(' ', '-')}-{count}-{repeat}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                if path == "recipe":
                    command = [sys.executable, "-c", RECIPE, str(folder), str(weights.path or ""), str(size), str(out)]
                else:
                    command = [sys.executable, "-m", "pipeline", "features", "--data", str(folder),
                               "--weights", str(weights.path or "none"), "--image-size", str(size),
                               *WALL_ARGS.get(path, ["--precision", path]), "--cache", str(out / "cache")]
                    if path == "int8 cached":  # a first, small store calibrates (not timed) ...
                        first = scratch / f"wall-photos-{min(counts)}"
                        run_timed([*command[:5], str(first), *command[6:]])
                        command += ["--pooling", "max"]  # ... and another store is timed
                seconds, peak, output = run_timed(command)
                chosen = next((line.split("->")[1].split(":")[0].strip() for line in output.splitlines()
                               if line.startswith("precision auto ->")), None)
                calibrated = "Calibrating int8" in output
                rows.append({"path": path, "images": count, "repeat": repeat, "seconds": seconds,
                             "peak_rss_mib": peak, "auto_chose": chosen, "calibrated": calibrated})
                shutil.rmtree(out, ignore_errors=True)
    return rows


def summarise_wall(rows: list[dict], counts: tuple[int, ...]) -> list[dict]:
    """Per path: median seconds at each count, marginal images/s between the smallest and the
    largest count, fixed seconds (the largest count's time less its images at the marginal rate)."""
    small, large = min(counts), max(counts)
    summary = []
    for path in WALL_PATHS:
        times = {count: statistics.median(r["seconds"] for r in rows if r["path"] == path and r["images"] == count)
                 for count in counts if any(r["path"] == path and r["images"] == count for r in rows)}
        if large not in times:
            continue
        spread = times[large] - times[small]
        marginal = (large - small) / spread if small != large and spread > 0 else float("nan")
        summary.append({"path": path, "seconds": {str(c): t for c, t in times.items()}, "marginal": marginal,
                        "fixed": times[large] - large / marginal if marginal == marginal else float("nan"),
                        "peak_rss_mib": max(r["peak_rss_mib"] for r in rows if r["path"] == path),
                        "auto_chose": next((r["auto_chose"] for r in rows if r["auto_chose"]), None)})
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 224])
    parser.add_argument("--images", type=int, default=96, help="images per path and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--head-rows", type=int, default=50000)
    parser.add_argument("--rss-counts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--wall-images", type=int, nargs="+", default=[200, 1000],
                        help="photo counts of the whole-command wall-time runs (the largest is the headline)")
    parser.add_argument("--wall-size", type=int, default=224)
    parser.add_argument("--wall-repeats", type=int, default=1)
    parser.add_argument("--wall-paths", nargs="+", choices=WALL_PATHS, default=list(WALL_PATHS),
                        help="whole-command paths to time (bf16 only where native); recipe always")
    parser.add_argument("--skip", nargs="*", default=[], choices=["paths", "heads", "rss", "wall"])
    args = parser.parse_args()
    weights = resolve_weights(str(WEIGHTS) if WEIGHTS.is_file() else "none")
    result = {"date": datetime.date.today().isoformat(), "host": socket.gethostname(),
              "machine": _machine(), "cpu": _cpu(), "weights": weights.identity, "photos": str(PHOTOS) if PHOTOS.is_dir() else
              "generated", "args": vars(args), "ceiling_probes_gflops": ceilings(),
              "gflop_per_image": {size: conv_flops(size) / 1e9 for size in args.sizes}}
    result["ceilings_gflops"] = {p: max(v.values()) for p, v in result["ceiling_probes_gflops"].items() if v}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if "paths" not in args.skip:
            result["paths"] = [row for size in args.sizes
                               for row in measure_paths(size, args.images, args.repeats, weights, scratch)]
        if "heads" not in args.skip:
            result["heads"] = head_times(args.head_rows, scratch)
        if "rss" not in args.skip:
            result["extraction_peak_rss_mib"] = extraction_rss(tuple(args.rss_counts), scratch)
        if "wall" not in args.skip:
            counts = tuple(sorted(set(args.wall_images)))
            result["wall_runs"] = wall_times(counts, args.wall_size, weights, scratch, args.wall_repeats,
                                             wall_paths(args.wall_paths))
            result["wall"] = summarise_wall(result["wall_runs"], counts)
    print_report(result)
    folder = ROOT / "bench" / "results" / _cpu_folder(result["cpu"]["model"])
    name = f"{result['date']}-{result['host']}"
    out = next(path for number in range(1, 1000)
               if not (path := folder / (f"{name}.json" if number == 1 else f"{name}-{number}.json")).exists())
    folder.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)}")


def _machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {os.cpu_count()} cores, TF {tf.__version__}"


def _cpu() -> dict:
    """The CPU's model name, core count and the flags that decide the precision."""
    from features.spec import BF16_CPU_FLAGS, choose_precision

    flags = cpu_flags()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    chosen, reason = choose_precision(flags, engine_installed())
    return {"model": model, "cores": os.cpu_count(),
            "flags": sorted(flags & {*BF16_CPU_FLAGS, *INT8_CPU_FLAGS, "avx2", "avx512f", "amx_tile"}),
            "auto": chosen, "auto_reason": reason}


def _cpu_folder(model: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in model.lower()).strip("-").replace("--", "-")


def print_wall(result: dict) -> None:
    """The whole-command table: seconds for the photo counts, ratio to the recipe, marginal
    rate and its share of the precision's ceiling, fixed seconds, peak memory, goals marked."""
    summary, size = result["wall"], result["args"]["wall_size"]
    large = str(max(result["args"]["wall_images"]))
    recipe = next(row for row in summary if row["path"] == "recipe")["seconds"][large]
    peaks, gflop = result.get("ceilings_gflops", {}), result["gflop_per_image"].get(size) or conv_flops(size) / 1e9
    auto = next((row["auto_chose"] for row in summary if row["auto_chose"]), result["cpu"]["auto"])
    counts = " / ".join(sorted(summary[0]["seconds"], key=int))
    print(f"\nWhat a user waits for: `features` on {large} photos at {size} px, fresh process and store "
          f"({result['cpu']['model']}, {result['cpu']['cores']} cores, flags {' '.join(result['cpu']['flags'])}; "
          f"auto -> {auto})")
    print(f"| path | seconds for {counts} photos | vs recipe | marginal img/s (% of ceiling) | fixed s | peak MiB |")
    print("|---|---|---|---|---|---|")
    best = max((recipe / row["seconds"][large], row["path"]) for row in summary if row["path"] != "recipe")
    default_goal = DEFAULT_GOAL_VNNI if set(result["cpu"]["flags"]) & set(INT8_CPU_FLAGS) else DEFAULT_GOAL
    for row in summary:
        precision = {"recipe": "fp32", "auto": auto}.get(row["path"], row["path"].split()[0])
        name = f"auto ({auto})" if row["path"] == "auto" else row["path"]
        ratio = recipe / row["seconds"][large]
        ceiling = peaks.get(precision, float("nan")) * 1e0 / gflop
        share = 100 * row["marginal"] / ceiling if ceiling == ceiling else float("nan")
        goals = []
        if row["path"] == "auto":
            goals.append(f"default >= {default_goal}x: " + ("met" if ratio >= default_goal else "NOT met"))
        if row["path"] == best[1]:
            goals.append("fastest")
        if row["path"] != "recipe" and share == share:
            goals.append("marginal >= 90%: " + ("met" if share >= 90 else "NOT met"))
        goals.append("<= 3 GB: " + ("met" if row["peak_rss_mib"] <= 3072 else "NOT met"))
        seconds = " / ".join(f"{row['seconds'][c]:.0f}" for c in sorted(row["seconds"], key=int))
        print(f"| {name} | {seconds} | {ratio:.2f}x | {row['marginal']:.1f} ({share:.0f}% of {ceiling:.1f}) | "
              f"{row['fixed']:.0f} | {row['peak_rss_mib']:.0f} | " + "; ".join(goals))


def print_report(result: dict) -> None:
    peaks = result["ceilings_gflops"]
    print(f"{result['machine']}; weights {result['weights']}; photos {result['photos']}")
    print(f"CPU: {result['cpu']['model']}, flags {' '.join(result['cpu']['flags'])}; "
          f"auto -> {result['cpu']['auto']}: {result['cpu']['auto_reason']}")
    print("ceilings (GFLOP/s, best probe): " + ", ".join(f"{p} {v:.0f}" for p, v in peaks.items()))
    for precision, probes in result["ceiling_probes_gflops"].items():
        print(f"  {precision}: " + ", ".join(f"{name} {value:.0f}" for name, value in probes.items()))
    rows = [r for r in result.get("paths", []) if "scope" in r]
    if rows:
        print("\n| px | engine | precision | scope | images/s median (min-max) | x recipe | % of ceiling "
              "| min (mean) cosine to Keras fp32 |")
        print("|---|---|---|---|---|---|---|---|")
        for row in rows:
            recipe = next(r["median"] for r in rows if r["size"] == row["size"] and r["engine"] == "recipe"
                          and r["scope"] == row["scope"])
            ceiling = peaks.get(row["precision"], float("nan")) / result["gflop_per_image"][row["size"]]
            print(f"| {row['size']} | {row['engine']} | {row['precision']} | {row['scope']} | "
                  f"{row['median']:.1f} ({row['min']:.1f}-{row['max']:.1f}) | {row['median'] / recipe:.2f}x | "
                  f"{100 * row['median'] / ceiling:.0f}% of {ceiling:.1f} | " +
                  (f"{row['min_cosine']:.4f} ({row['mean_cosine']:.4f}) |" if "min_cosine" in row else "- |"))
        for row in result["paths"]:
            if row.get("calibration_seconds"):
                print(f"int8 calibration for {row['size']} px ({DEFAULT_CALIBRATION_IMAGES} images at "
                      f"{calibration_image_size(row['size'])} px): {row['calibration_seconds']:.0f} s")
    for head, info in result.get("heads", {}).items():
        print(f"head {head} on {result['args']['head_rows']:,} x 512: {info['seconds']:.1f} s fit "
              f"(accuracy {info['accuracy']:.3f}; {info['details']})")
    for count, mib in result.get("extraction_peak_rss_mib", {}).items():
        print(f"extraction peak RSS, {count:,} images: {mib:.0f} MiB")
    if result.get("wall"):
        print_wall(result)


if __name__ == "__main__":
    main()
