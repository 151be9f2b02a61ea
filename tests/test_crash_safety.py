"""Real processes killed at several points: the store resumes to the bytes of an unbroken run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_split_folder

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["--weights", "none", "--image-size", "64", "--shard-size", "4", "--batch-size", "2",
            "--passes", "1", "--precision", "fp32"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_split_folder(tmp_path_factory.mktemp("crash") / "photos", 16, 6)


SLOW_WRITES = str(ROOT / "tests" / "slow_writes.py")


def features_command(photos, cache, slow_writes=False):
    runner = [SLOW_WRITES] if slow_writes else ["-m", "pipeline"]
    return [sys.executable, *runner, "features", "--data", str(photos), "--cache", str(cache), *SETTINGS]


def run_features(photos, cache, **env):
    return subprocess.run(features_command(photos, cache), cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def store_files(cache):
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def shard_count(cache):
    for manifest in cache.glob("*/manifest.json"):
        try:
            return len(json.loads(manifest.read_text())["shards"])
        except ValueError:  # the manifest is replaced atomically: a reader never sees half of it
            raise AssertionError(f"{manifest} was read half-written")
    return 0


def start_and_kill(photos, cache, ready, sig=signal.SIGKILL, slow_writes=False):
    process = subprocess.Popen(features_command(photos, cache, slow_writes), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before the kill point"
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return process.returncode, err


@pytest.fixture(scope="module")
def unbroken(photos, tmp_path_factory):
    cache = tmp_path_factory.mktemp("unbroken")
    result = run_features(photos, cache)
    assert result.returncode == 0, result.stderr
    return store_files(cache)


@pytest.mark.parametrize("after_shards", [1, 7])
def test_sigkill_after_shards_resumes_to_identical_store(photos, unbroken, tmp_path, after_shards):
    cache = tmp_path / "cache"
    code, _ = start_and_kill(photos, cache, lambda: shard_count(cache) >= after_shards)
    assert code == -signal.SIGKILL
    written = shard_count(cache)
    assert 0 < written < 19
    finished = {name: data for name, data in store_files(cache).items() if name.endswith(".npy")}

    resumed = run_features(photos, cache)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{written} of 19 shards already written" in resumed.stderr
    assert "Verified the resumed store" in resumed.stderr
    after = store_files(cache)
    assert after == unbroken
    for name, data in finished.items():  # no finished shard was redone differently
        assert after[name] == data


@pytest.mark.parametrize("written_file", ["shard-*.npy", "manifest.json"])
def test_sigkill_during_a_write_leaves_nothing_half_valid(photos, unbroken, tmp_path, written_file):
    cache = tmp_path / "cache"
    pattern = f".{written_file}.tmp-*"
    code, _ = start_and_kill(photos, cache, lambda: shard_count(cache) >= 2 and any(cache.rglob(pattern)),
                             slow_writes=True)
    assert code == -signal.SIGKILL
    assert list(cache.rglob(pattern)), "the kill did not land inside a write"
    verify = subprocess.run([sys.executable, "-m", "pipeline", "verify", "--store",
                             str(next(p for p in cache.iterdir() if p.is_dir())), "--cache", str(cache)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 1 and "planned shard" in verify.stdout and "missing" in verify.stdout

    resumed = run_features(photos, cache)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(cache.rglob(".*.tmp-*"))
    assert store_files(cache) == unbroken


def test_ctrl_c_exits_130_and_says_how_to_resume(photos, unbroken, tmp_path):
    cache = tmp_path / "cache"
    code, err = start_and_kill(photos, cache, lambda: shard_count(cache) >= 3, sig=signal.SIGINT)
    assert code == 130, err
    assert "Run the same command again to resume" in err and "Traceback" not in err
    assert not (next(p for p in cache.iterdir() if p.is_dir()) / ".lock").exists()
    assert run_features(photos, cache).returncode == 0
    assert store_files(cache) == unbroken


def test_a_store_being_written_is_refused_and_a_stale_lock_taken_over(photos, unbroken, tmp_path):
    cache = tmp_path / "cache"
    code, _ = start_and_kill(photos, cache, lambda: shard_count(cache) >= 1)
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (folder / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        refused = run_features(photos, cache)
        assert refused.returncode == 1
        assert f"being written by process {holder.pid}" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        holder.kill()
        holder.wait()
    taken_over = run_features(photos, cache)  # the holder is dead now: its lock is stale
    assert taken_over.returncode == 0, taken_over.stderr
    assert store_files(cache) == unbroken
