"""Real processes killed at several points: the store resumes to the bytes of an unbroken run.

The killed runs are real processes; the reference run and the runs that resume or inspect
the store afterwards use the same CLI in this process (no Python and TensorFlow start-up each),
so every file a killed process finished is compared with one written by another process.
"""

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from features.lock import lock_path
from tests.conftest import make_cli, write_split_folder

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["--weights", "none", "--image-size", "32", "--shard-size", "4", "--batch-size", "2",
            "--passes", "1", "--precision", "fp32"]
SHARDS = 14  # 24 training images in two passes and 8 validation images, 4 to a shard
SLOW_WRITES_PAUSE = "0.1"  # seconds each fsync pauses in a slow-writes run: a kill can land inside a write


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_split_folder(tmp_path_factory.mktemp("crash") / "photos", 12, 4)


SLOW_WRITES = str(ROOT / "tests" / "slow_writes.py")


def features_command(photos, cache, slow_writes=False):
    runner = [SLOW_WRITES] if slow_writes else ["-m", "pipeline"]
    return [sys.executable, *runner, "features", "--data", str(photos), "--cache", str(cache), *SETTINGS]


def run_features(photos, cache):
    """The same `features` command, run with the CLI in this process: (exit code, its output)."""
    result = make_cli(cache.parent)(*features_command(photos, cache)[3:])
    return result.exit_code, result.output


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


def _as_from_a_terminal():
    """Ctrl-C handled as at a terminal, even when the suite itself runs in the background (a
    shell starts background jobs with SIGINT ignored, which Python then keeps ignoring)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_kill(photos, cache, ready, sig=signal.SIGKILL, slow_writes=False):
    env = {**os.environ, "SLOW_WRITES_PAUSE": SLOW_WRITES_PAUSE}
    process = subprocess.Popen(features_command(photos, cache, slow_writes), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=_as_from_a_terminal)
    deadline = time.monotonic() + 240
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before the kill point"
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return process.returncode, err


@pytest.fixture(scope="module")
def unbroken(photos, tmp_path_factory):
    cache = tmp_path_factory.mktemp("unbroken") / "cache"
    code, output = run_features(photos, cache)
    assert code == 0, output
    return store_files(cache)


@pytest.fixture(scope="module")
def killed_after_one_shard(photos, tmp_path_factory):
    """The cache a real run left when SIGKILLed once its first shard was recorded; the tests that
    start from that state each take a copy of it."""
    cache = tmp_path_factory.mktemp("killed") / "cache"
    code, _ = start_and_kill(photos, cache, lambda: shard_count(cache) >= 1)
    assert code == -signal.SIGKILL
    return cache


def sigkilled(photos, cache, after_shards, request):
    """Fill ``cache`` as a run SIGKILLed after ``after_shards`` recorded shards leaves it."""
    if after_shards == 1:
        shutil.copytree(request.getfixturevalue("killed_after_one_shard"), cache, symlinks=True)
        return
    code, _ = start_and_kill(photos, cache, lambda: shard_count(cache) >= after_shards)
    assert code == -signal.SIGKILL


@pytest.mark.parametrize("after_shards", [1, 7])
def test_sigkill_after_shards_resumes_to_identical_store(photos, unbroken, tmp_path, after_shards, request):
    cache = tmp_path / "cache"
    sigkilled(photos, cache, after_shards, request)
    written = shard_count(cache)
    assert 0 < written < SHARDS
    finished = {name: data for name, data in store_files(cache).items() if name.endswith(".npy")}

    code, output = run_features(photos, cache)
    assert code == 0, output
    assert f"{written} of {SHARDS} shards already written" in output
    assert "Verified the resumed store" in output
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
    verify = make_cli(tmp_path)("verify", "--store", next(p for p in cache.iterdir() if p.is_dir()),
                                "--cache", cache)
    assert verify.exit_code == 1 and "planned shard" in verify.stdout and "missing" in verify.stdout

    code, output = run_features(photos, cache)
    assert code == 0, output
    assert not list(cache.rglob(".*.tmp-*"))
    assert store_files(cache) == unbroken


def test_ctrl_c_exits_130_and_says_how_to_resume(photos, unbroken, tmp_path):
    cache = tmp_path / "cache"
    code, err = start_and_kill(photos, cache, lambda: shard_count(cache) >= 3, sig=signal.SIGINT)
    assert code == 130, err
    assert "Run the same command again to resume" in err and "Traceback" not in err
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    with open(lock_path(folder)) as lock:  # released
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert run_features(photos, cache)[0] == 0
    assert store_files(cache) == unbroken


def test_a_store_being_written_is_refused_and_a_killed_holders_lock_is_free(photos, unbroken, tmp_path, request):
    cache = tmp_path / "cache"
    sigkilled(photos, cache, 1, request)  # its lock died with it
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from features.lock import store_lock; lock = store_lock(sys.argv[1]).__enter__(); "
        "print('locked', flush=True); time.sleep(120)"), str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, output = run_features(photos, cache)
        assert code == 1
        assert f"Process {holder.pid} on {socket.gethostname()} is writing the store" in output
        assert "Traceback" not in output
    finally:
        holder.kill()
        holder.wait()
    code, output = run_features(photos, cache)  # the holder was SIGKILLed: its lock went with it
    assert code == 0, output
    assert store_files(cache) == unbroken
