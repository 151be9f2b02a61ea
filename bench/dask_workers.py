"""Stage one locally against Dask with 1 and 2 worker processes on loopback: images/s side by side.

Run: .venv/bin/python bench/dask_workers.py [--images 192] [--size 150] [--precision auto]
Needs the dask extra, ../shared/weights/vgg16_notop.weights.h5 and ../shared/data/cats_and_dogs_filtered.
Each cluster is started (and its workers' imports warmed) before its run is timed; its
start-up is shown apart. Every run must write the same shards (sha256 per shard).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from distributed import Client, LocalCluster  # noqa: E402

from features import BackboneSpec, ExtractConfig, resolve_weights, scan_dataset  # noqa: E402
from pipeline.stores import build_store  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTOS = SHARED / "data" / "cats_and_dogs_filtered"
WEIGHTS = SHARED / "weights" / "vgg16_notop.weights.h5"
# (label, worker processes, TensorFlow threads in each); None: the local backend.
VARIANTS = [("local", None, None), ("dask 1 worker x 2 threads", 1, 2),
            ("dask 2 workers x 1 thread", 2, 1), ("dask 2 workers x 2 threads", 2, 2)]


def subset(root: Path, images: int) -> Path:
    """Links to ``images`` photos: 5/6 training, 1/6 validation, cats and dogs alike."""
    for split, count in (("train", images * 5 // 6), ("validation", images // 6)):
        for animal in ("cats", "dogs"):
            folder = root / split / animal
            folder.mkdir(parents=True)
            for photo in sorted((PHOTOS / split / animal).iterdir())[:count // 2]:
                (folder / photo.name).symlink_to(photo)
    return root


def warm(client: Client) -> None:
    """Import TensorFlow and the project in every worker before the clock starts."""
    client.run(lambda: __import__("features.distributed"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    dataset = scan_dataset(subset(work / "photos", args.images), 0.2)
    # precision auto resolved here, once, for every run (as `features` does); the engine follows it
    spec = BackboneSpec.resolve(precision=args.precision, weights=resolve_weights(str(WEIGHTS)), image_size=args.size)
    config = ExtractConfig(backbone=spec, shard_size=args.shard_size)
    print(f"{len(dataset.sources)} photos at {args.size} px, {spec.precision}, shards of "
          f"{args.shard_size}, {os.cpu_count()} cores")
    print("| backend | start-up s | extraction s | images/s | ratio to local |")
    print("|---|---|---|---|---|")
    hashes, base = {}, None
    for label, workers, threads in VARIANTS:
        cache = work / f"cache-{len(hashes)}"
        started = time.perf_counter()
        if workers is None:
            cluster, scheduler, startup = None, None, 0.0
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=":0", env={"TF_NUM_INTRAOP_THREADS": str(threads)})
            with Client(cluster, set_as_default=False) as client:
                warm(client)
            scheduler, startup = cluster.scheduler_address, time.perf_counter() - started
        started = time.perf_counter()
        store = build_store(dataset, config, cache, backend="local" if workers is None else "dask",
                            scheduler=scheduler)
        seconds = time.perf_counter() - started
        if cluster is not None:
            cluster.close()
        rate = len(dataset.sources) / seconds
        base = base or rate
        hashes[label] = [entry["sha256"] for entry in store.manifest["shards"]]
        print(f"| {label} | {startup:.1f} | {seconds:.1f} | {rate:.1f} | {rate / base:.2f}x |", flush=True)
    same = all(h == hashes["local"] for h in hashes.values())
    print(f"every run wrote the same shards (sha256): {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
