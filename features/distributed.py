"""Stage one on a Dask cluster: one task per shard, written by a worker, recorded by the client.

Each worker process builds the engine once and writes its shards' files straight into
the store with the same atomic write-then-rename as a local run; the client only
records them in the manifest, in plan order, so the store is the very one a local run
writes. Workers and client must see the store, the data and the weights at the same
paths (a shared filesystem); every worker is checked for that before any work starts.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from features.augment import Augmenter
from features.calibration import ensure_int8_model
from features.dataset import Dataset
from features.engines import int8_model_path, open_engine
from features.errors import FeatureError
from features.extract import ExtractConfig, compute_shard
from features.manifest import MANIFEST
from features.store import TEMPORARY_MARK, Shard, StoreWriter, remove_leftovers, write_shard_files
from features.verify import dataset_from_manifest
from features.weights import Weights

logger = logging.getLogger(__name__)

BACKENDS = ("local", "dask")
INSTALL_DASK = "pip install '.[dask]' (or pass BACKEND=dask to make)"
CONNECT_TIMEOUT = 30  # seconds to reach a scheduler, and for its first worker to join
CHECK_TIMEOUT = 60  # seconds for every worker to confirm it can see the store
CORES_PER_WORKER = 2  # a LocalCluster runs one worker process per this many cores
SAME_PATHS = ("Workers must see the store, the data and the weights at the same paths as this "
              "client: put `cache` (and the data) on a filesystem they all share.")


def check_backend(backend: str, scheduler: str | None) -> None:
    """Fail early on an unknown backend, a scheduler without Dask, or Dask not installed."""
    if backend not in BACKENDS:
        raise FeatureError(f"`backend` must be one of {', '.join(BACKENDS)}. Received: {backend}")
    if scheduler and backend != "dask":
        raise FeatureError(f"`scheduler` needs `backend` dask. Received: `backend` {backend}")
    if backend == "dask" and importlib.util.find_spec("distributed") is None:
        raise FeatureError(f"`backend` dask needs Dask, which is not installed: {INSTALL_DASK}.")


@contextmanager
def dask_client(scheduler: str | None):
    """A Dask client of the cluster at ``scheduler``, or of a new loopback LocalCluster.

    The LocalCluster runs one single-threaded worker process per ``CORES_PER_WORKER``
    cores (at least one), TensorFlow in each using its share of the cores.
    """
    from distributed import Client, LocalCluster

    if scheduler is None:
        cores = os.cpu_count() or 1
        workers = max(1, cores // CORES_PER_WORKER)
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=":0", env={"TF_NUM_INTRAOP_THREADS": str(cores // workers)}) as cluster:
            with Client(cluster) as client:
                yield client
        return
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError) as error:
        raise FeatureError(f"Could not reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT}s "
                           f"({error}). Start one with `dask scheduler`, or fix `scheduler`.") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except TimeoutError:
            raise FeatureError(f"No Dask worker joined the scheduler at {scheduler} within {CONNECT_TIMEOUT}s. "
                               f"Start some with `dask worker {scheduler}`.") from None
        yield client


@contextmanager
def backend_client(backend: str, scheduler: str | None):
    """With ``backend="dask"``, a Dask client open for the block (else nothing) and joblib's
    parallel work inside it, such as the scikit-learn heads' search, sent to that cluster."""
    check_backend(backend, scheduler)
    if backend == "local":
        yield None
        return
    import joblib

    with dask_client(scheduler) as client, joblib.parallel_config(backend="dask"):
        yield client


@dataclass(frozen=True)
class Job:
    """What every shard task needs besides its shard; small, so it travels with each task."""

    folder: str  # the store folder, absolute
    key: str
    config: ExtractConfig  # its backbone's weights are a file every worker can read

    @property
    def int8_model(self) -> str | None:
        return str(int8_model_path(self.folder)) if self.config.backbone.precision == "int8" else None


@dataclass(frozen=True)
class DaskExecutor:
    """Computes each missing shard on a Dask worker; the store comes out the same as a local run's.

    ``scheduler`` is a ``tcp://host:port`` address, or None for a LocalCluster on this machine.
    """

    scheduler: str | None = None

    def run(self, dataset: Dataset, config: ExtractConfig, writer: StoreWriter, todo: list[Shard],
            on_images: Callable[[int], None]) -> None:
        folder = writer.folder.absolute()
        if config.backbone.precision == "int8":
            ensure_int8_model(writer, dataset, config.backbone)
        with dask_client(self.scheduler) as client, _weights_for_workers(folder, config) as shared:
            job = Job(str(folder), writer.manifest["key"], shared)
            _check_workers(client, job)
            logger.info("Extracting %d shard(s) on %d Dask worker(s) at %s.", len(todo),
                        len(client.nthreads()), client.scheduler.address)
            _run_shards(client, job, todo, writer, on_images)
        remove_leftovers(writer.folder)  # from workers killed mid-write


@contextmanager
def _weights_for_workers(folder: Path, config: ExtractConfig):
    """``config`` with weights that the workers can load.

    Random weights are drawn here, once, exactly as a local run draws them, and saved in
    the store folder while the run lasts: drawn in a worker they would not repeat, since
    Keras seeds its initializers from Python's global random numbers, which Dask's own
    threads in the worker draw from at any moment.
    """
    spec = config.backbone
    if spec.weights.path is not None:
        yield config
        return
    from features.backbone import build_backbone

    path = folder / f".random-weights{TEMPORARY_MARK}{os.getpid()}.weights.h5"
    precision = spec.precision if spec.engine == "keras" else "fp32"
    # the whole base (every pooling draws the same weights; `blocks` and block4_pool wrap it in another model)
    build_backbone(spec, precision, pooling="none").get_layer("vgg16").save_weights(path)
    try:
        shared = Weights(str(path), spec.weights.identity, spec.weights.warning)
        yield replace(config, backbone=replace(spec, weights=shared))
    finally:
        path.unlink(missing_ok=True)


def _check_workers(client, job: Job) -> None:
    """Fail in one line, within ``CHECK_TIMEOUT``, unless every worker can do ``job``'s shards."""
    from distributed import wait

    workers = list(client.nthreads())
    checks = {client.submit(worker_problem, job, workers=[address], allow_other_workers=False,
                            pure=False): address for address in workers}
    try:
        wait(list(checks), timeout=CHECK_TIMEOUT)
    except TimeoutError:
        client.cancel(list(checks))
        raise FeatureError(f"Dask workers did not confirm within {CHECK_TIMEOUT}s that they can see the "
                           f"store {job.folder} (a hung shared filesystem?).") from None
    answers = {address: future.result() for future, address in checks.items()}
    problems = {address: problem for address, problem in answers.items() if problem}
    if problems:
        address, problem = next(iter(problems.items()))
        raise FeatureError(f"{len(problems)} of {len(workers)} Dask worker(s) cannot work on this store; "
                           f"{address}: {problem}. {SAME_PATHS}")


def _run_shards(client, job: Job, todo: list[Shard], writer: StoreWriter,
                on_images: Callable[[int], None]) -> None:
    """Submit one task per shard and record each one in plan order as soon as it can be.

    A shard finished out of turn (its files written) waits until those before it are
    recorded, so the manifest lists shards in the same order as a local run's. Shards
    that finish while the manifest is being saved are recorded together, with one save,
    so a large manifest's save time does not cap the number of workers.
    """
    from distributed import as_completed

    futures = {client.submit(run_shard, job, shard): position for position, shard in enumerate(todo)}
    finished, next_position = {}, 0
    try:
        for batch in as_completed(futures).batches():  # all shards finished since the last batch
            for future in batch:
                position = futures[future]
                finished[position] = _shard_result(future, todo[position])
                on_images(len(todo[position].sources))
            recorded = next_position
            while next_position in finished:
                writer.record_shard(*finished.pop(next_position), save=False)
                next_position += 1
            if next_position > recorded:  # one manifest rewrite per batch, however many shards
                writer.save_manifest()
    finally:
        client.cancel(list(futures))


def _shard_result(future, shard: Shard) -> tuple[dict, dict[str, str]]:
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker:
        raise FeatureError(f"Shard {shard.name} took down every Dask worker that ran it (out of memory? "
                           "see the workers' logs). Finished shards are saved: rerun the same command "
                           "to resume.") from None


# Worker side: each worker process keeps the store's dataset and one engine between tasks.
_prepared: dict = {}
_prepare_lock = threading.Lock()


def run_shard(job: Job, shard: Shard) -> tuple[dict, dict[str, str]]:
    """On a worker: compute one shard, write its files; return (manifest entry, skipped files)."""
    dataset, manifest, engine, augmenter = _prepare(job)
    rows = compute_shard(dataset, shard, engine, augmenter, job.config)
    entry = write_shard_files(Path(job.folder), manifest, shard, rows.features, rows.labels, rows.sources)
    return entry, rows.skipped


def _prepare(job: Job) -> tuple:
    """(dataset, manifest, engine, augmenter) for ``job``, built once per worker process."""
    with _prepare_lock:
        if _prepared.get("job") != job:
            _prepared.clear()
            problem = worker_problem(job)
            if problem:
                raise FeatureError(f"Dask worker {socket.gethostname()} cannot work on this store: "
                                   f"{problem}. {SAME_PATHS}")
            dataset, manifest = _read_store(job.folder, job.key)
            engine = open_engine(job.config.backbone, job.folder)
            augmenter = Augmenter(job.config.augment) if job.config.passes else None
            _prepared.update(job=job, state=(dataset, manifest, engine, augmenter))
        return _prepared["state"]


@functools.lru_cache(maxsize=1)
def _read_store(folder: str, key: str) -> tuple[Dataset, dict]:
    """The dataset and the parts of the manifest a worker needs, read once from the store's manifest."""
    manifest = json.loads((Path(folder) / MANIFEST).read_text())
    if manifest.get("key") != key:
        raise FeatureError(f"{Path(folder) / MANIFEST} belongs to store {manifest.get('key')}, not {key}")
    return dataset_from_manifest(manifest), {k: manifest[k] for k in ("sources", "feature_shape")}


def worker_problem(job: Job) -> str | None:
    """Why this worker cannot compute ``job``'s shards (the store, data or weights out of its
    sight, or the store not writable), or None when it can."""
    try:
        dataset, _ = _read_store(job.folder, job.key)
    except (OSError, ValueError) as error:
        return f"cannot read {Path(job.folder) / MANIFEST} ({getattr(error, 'strerror', None) or error})"
    except FeatureError as error:
        return str(error)
    probe = Path(job.folder) / f".worker-probe{TEMPORARY_MARK}{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return f"cannot write in {job.folder} ({error.strerror or error})"
    first_image = dataset.root / dataset.sources[0].path
    for path in (first_image, job.config.weights.path, job.int8_model):
        if path and not os.access(path, os.R_OK):
            return f"cannot read {path}"
    return None
