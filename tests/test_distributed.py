"""Stage one and the heads' search on Dask, on loopback: same store as a local run, worker
deaths survived, an unreachable store refused in one line."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from heads import HEADS
from pipeline.runs import COLUMN_CHOICES
from tests.conftest import extract_args, make_cli, write_split_folder

pytest.importorskip("distributed", reason="the dask extra is not installed: pip install '.[dask]'")
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SLOW_WRITES = str(ROOT / "tests" / "slow_writes.py")  # every fsync pauses: a kill lands inside a write
# 24 training and 6 validation images, 8 to a shard, 2 augmented passes: 10 shards.
SETTINGS = ["--shard-size", "8", "--batch-size", "4", "--passes", "2"]
SHARDS = 10


def two_workers(**worker_options) -> LocalCluster:
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=":0", **worker_options)


def store_files(cache: Path) -> dict[str, bytes]:
    """Every file of every store under ``cache``, by path (the store folder, its key, included)."""
    return {p.relative_to(cache).as_posix(): p.read_bytes()
            for p in cache.rglob("*") if p.is_file() and p.parent != cache}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_split_folder(tmp_path_factory.mktemp("distributed") / "photos", 12, 3)


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, shared by the tests below (each worker imports TensorFlow once).
    Every fsync in a worker pauses first, so that a test can kill a worker inside a write."""
    with two_workers(preload=[SLOW_WRITES], env={"SLOW_WRITES_PAUSE": "0.1"}) as running:
        yield running


@pytest.fixture(scope="module")
def local_store(photos, tmp_path_factory):
    cli = make_cli(tmp_path_factory.mktemp("local"))
    result = cli(*extract_args(photos, cli.cache, *SETTINGS))
    assert result.exit_code == 0, result.output
    return cli.cache


@pytest.fixture(scope="module")
def dask_store(photos, cluster, tmp_path_factory):
    cli = make_cli(tmp_path_factory.mktemp("dask"))
    result = cli(*extract_args(photos, cli.cache, *SETTINGS, "--backend", "dask",
                               "--scheduler", cluster.scheduler_address))
    assert result.exit_code == 0, result.output
    assert f"{SHARDS} shard(s) on 2 Dask worker(s)" in result.output
    return cli


def test_two_workers_write_the_local_store_byte_for_byte(local_store, dask_store):
    dask_files = store_files(dask_store.cache)
    assert len([name for name in dask_files if name.endswith(".npy")]) == SHARDS * 3
    assert dask_files == store_files(local_store)  # same key, shards, hashes and manifest


def test_the_heads_search_runs_on_the_cluster_and_chooses_as_locally(dask_store, cluster, tmp_path):
    local = dask_store("head", "--head", "logreg", "--cache", dask_store.cache, "--runs", tmp_path / "local")
    assert local.exit_code == 0, local.output
    with Client(cluster, set_as_default=False) as watcher, get_task_stream(watcher) as tasks:
        remote = dask_store("head", "--head", "logreg", "--backend", "dask", "--scheduler",
                            cluster.scheduler_address, "--cache", dask_store.cache, "--runs", tmp_path / "dask")
    assert remote.exit_code == 0, remote.output
    fits = [task for task in tasks.data if "_fit_and_score" in str(task["key"])]
    candidates = len(HEADS["logreg"].default_search_space["C"]) * len(COLUMN_CHOICES)  # a blocks store
    assert 1 <= len(fits) <= candidates * 3  # the candidates x folds, which joblib may batch by their duration
    chosen = [json.loads(next((tmp_path / runs).rglob("run.json")).read_text())["details"]
              for runs in ("local", "dask")]
    assert chosen[0] == chosen[1]


def test_a_worker_killed_mid_write_has_its_shard_rerun(photos, local_store, cluster, tmp_path):
    """SIGKILL the worker process that is in the middle of writing a shard file (every fsync
    pauses); the nanny restarts it, the shard is rerun, and the store is the local one.

    The client is this process's CLI, run in a thread while this one watches the store."""
    cache = tmp_path / "cache"
    with Client(cluster, set_as_default=False) as client:
        pids = set(client.run(os.getpid).values())
        outcome = {}
        run = threading.Thread(target=lambda: outcome.update(result=make_cli(tmp_path)(
            *extract_args(photos, cache, *SETTINGS), "--backend", "dask", "--scheduler",
            cluster.scheduler_address)), daemon=True)
        run.start()
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and run.is_alive() and time.monotonic() < deadline:
            writing = [int(p.name.rsplit("-", 1)[1]) for p in cache.rglob(".shard-*.npy.tmp-*")]
            victim = next((pid for pid in writing if pid in pids), None)
            time.sleep(0.01)
        assert victim is not None, "no worker was caught writing a shard"
        os.kill(victim, signal.SIGKILL)
        run.join(timeout=240)
        assert not run.is_alive(), "the run did not finish after the worker was killed"
        assert outcome["result"].exit_code == 0, outcome["result"].output
        assert victim not in client.run(os.getpid).values()
    (store,) = [p for p in cache.iterdir() if p.is_dir()]
    verify = make_cli(tmp_path)("verify", "--store", store, "--cache", cache)
    assert verify.exit_code == 0 and "OK: store" in verify.output, verify.output
    assert store_files(cache) == store_files(local_store)  # no partial, duplicate or missing shard


def test_a_worker_that_cannot_see_the_store_is_one_clear_error(photos, tmp_path, monkeypatch):
    """The store is given as /proc/self/cwd/cache, a path each process reads in its own working
    directory: the client (run in one folder) sees its store there, the `dask worker` process
    (started in another folder) finds nothing, like a worker on a host that lacks the client's
    disk. The run must stop with one error line, within the check's timeout, not hang."""
    client_dir, worker_dir = tmp_path / "client", tmp_path / "worker"
    client_dir.mkdir()
    worker_dir.mkdir()
    monkeypatch.chdir(client_dir)
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as scheduler:
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", scheduler.scheduler_address,
             "--nthreads", "1", "--no-dashboard"],
            cwd=worker_dir, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            started = time.monotonic()
            result = make_cli(client_dir)(*extract_args(photos, "/proc/self/cwd/cache", *SETTINGS),
                                          "--backend", "dask", "--scheduler", scheduler.scheduler_address)
            elapsed = time.monotonic() - started
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert "cannot work on this store" in errors[0] and "/proc/self/cwd/cache" in errors[0]
    assert "same paths" in errors[0]
    assert elapsed < 90
    assert not list((client_dir / "cache").rglob("*.npy"))  # nothing was computed


def test_a_blocks_store_on_dask_is_the_local_one(photos, cluster, tmp_path):
    """Every pooling on the workers, `blocks` too (its base wrapped in a model of three outputs)."""
    stores = {}
    for name, backend in (("local", []), ("dask", ["--backend", "dask", "--scheduler", cluster.scheduler_address])):
        cli = make_cli(tmp_path / name)
        result = cli(*extract_args(photos, cli.cache, "--pooling", "blocks", "--shard-size", "8", *backend))
        assert result.exit_code == 0, result.output
        stores[name] = store_files(cli.cache)
    assert stores["dask"] == stores["local"]
