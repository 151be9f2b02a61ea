"""Runs and exports someone else wrote, and heads refitted while things go wrong, in real processes:
opening a folder never runs code from it, `--force` never deletes a file it did not write, and a
killed or failed refit leaves the previous head usable."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import skops.io

from pipeline.runs import hash_folder
from tests.conftest import REPORT_TENSORFLOW, cli_process, extract_args, make_cli, write_images

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """A pickle that, when loaded, writes the file ``marker``: what a planted model could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A store of two classes and a logreg run fitted on it: (cli, photos)."""
    cli = make_cli(tmp_path_factory.mktemp("shared"))
    photos = cli.cache.parent / "photos"
    write_images(photos, {"cats": 8, "dogs": 8})
    assert cli(*extract_args(photos, cli.cache)).exit_code == 0
    result = cli("head", "--head", "logreg", "--no-search", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 0, result.output
    return cli, photos


def copy_runs(cli, tmp_path) -> Path:
    runs = tmp_path / "runs"
    subprocess.run(["cp", "-a", str(cli.runs), str(runs)], check=True)
    return runs


def plant(model_folder: Path, record: Path, name: str, payload: bytes) -> None:
    """Replace the head's files in ``model_folder`` by ``name`` holding ``payload``, and vouch for it in
    ``record`` (run.json or export.json): whoever can write the one can write the other."""
    for path in model_folder.iterdir():
        path.unlink()
    (model_folder / name).write_bytes(payload)
    info = json.loads(record.read_text())
    info["model_sha256"] = hash_folder(model_folder)
    record.write_text(json.dumps(info))


def one_error_line(result: subprocess.CompletedProcess, *expected: str) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(text in lines[0] for text in expected), lines[0]
    return lines[0]


@pytest.mark.parametrize("planted", ["pickle", "skops"])
def test_a_planted_model_in_a_runs_folder_is_refused_unopened(fitted, tmp_path, planted):
    cli, photos = fitted
    runs = copy_runs(cli, tmp_path)
    (run,) = runs.glob("*/logreg")
    marker = tmp_path / "code-ran"
    if planted == "pickle":  # an old run's file name, holding an attacker's pickle
        import pickle
        plant(run / "model", run / "run.json", "model.joblib", pickle.dumps(Payload(marker)))
        expected = ("model.joblib", "never opened", "head --head logreg")
    else:  # a skops file naming a type no head holds
        plant(run / "model", run / "run.json", "model.skops", skops.io.dumps({"run": os.system}))
        expected = ("model.skops", "system", "not opened")
    result = cli_process("predict", photos, "--head", "logreg", "--cache", cli.cache, "--runs", runs,
                         prelude=REPORT_TENSORFLOW)
    one_error_line(result, *expected)
    assert not marker.exists()
    assert "tensorflow loaded: False" in result.stderr  # refused at once, before the extractor starts


def test_a_planted_pickle_in_an_export_folder_is_refused_unopened(fitted, tmp_path):
    cli, photos = fitted
    out = tmp_path / "export"
    assert cli("export", "--head", "logreg", "--out", out, "--cache", cli.cache, "--runs", cli.runs).exit_code == 0
    marker = tmp_path / "code-ran"
    import pickle
    plant(out / "model", out / "export.json", "model.joblib", pickle.dumps(Payload(marker)))
    result = cli_process("predict", photos, "--export", out, prelude=REPORT_TENSORFLOW)
    one_error_line(result, "model.joblib", "never opened")
    assert not marker.exists()
    assert "tensorflow loaded: False" in result.stderr


def test_export_force_refuses_a_folder_holding_files_it_did_not_write(fitted, tmp_path):
    cli, _ = fitted
    common = ("--head", "logreg", "--cache", cli.cache, "--runs", cli.runs)
    out = tmp_path / "export"
    assert cli("export", "--out", out, *common).exit_code == 0
    for foreign, named in ((out / "serve.py", "serve.py"), (out / "model" / "notes.txt", "model/notes.txt"),
                           (out / "extra" / "data.csv", "extra")):
        foreign.parent.mkdir(exist_ok=True)
        foreign.write_text("the user's")
        refused = cli("export", "--out", out, "--force", *common)
        assert refused.exit_code == 1 and repr(named) in refused.output and "no export wrote" in refused.output
        assert foreign.read_text() == "the user's"
        foreign.unlink()
        if foreign.parent.name == "extra":
            foreign.parent.rmdir()
    forced = cli("export", "--out", out, "--force", *common)
    assert forced.exit_code == 0, forced.output
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model"]
    assert not list(tmp_path.glob(".export*"))


def predictions(cli, photos, runs) -> str:
    result = cli("predict", photos, "--head", "logreg", "--format", "json", "--cache", cli.cache, "--runs", runs)
    assert result.exit_code == 0, result.output
    return result.stdout


def start_head(cli, runs: Path, slow_writes: bool) -> subprocess.Popen:
    """`head --head logreg` with other settings in a real process; every fsync pauses when ``slow_writes``."""
    runner = [str(ROOT / "tests" / "slow_writes.py")] if slow_writes else ["-m", "pipeline"]
    return subprocess.Popen([sys.executable, *runner, "head", "--head", "logreg", "--param", "C=0.01",
                             "--no-search", "--cache", str(cli.cache), "--runs", str(runs)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SLOW_WRITES_PAUSE": "1"})


def wait_for(ready, process, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before the kill point"


@pytest.mark.parametrize("point", ["fitting", "model written", "writing the records"])
def test_a_refit_killed_at_any_point_leaves_the_old_head_predicting(fitted, tmp_path, point):
    cli, photos = fitted
    runs = copy_runs(cli, tmp_path)
    before = predictions(cli, photos, runs)
    (key,) = [p.name for p in runs.iterdir()]
    staging = lambda: list((runs / key).glob(".logreg.tmp-*"))  # noqa: E731
    ready = {"fitting": lambda: (runs / key / ".logreg.lock").stat().st_size > 0,
             "model written": lambda: any((s / "model" / "model.skops").exists() for s in staging()),
             "writing the records": lambda: any(s.glob(".metrics.json.tmp-*") for s in staging())}[point]
    process = start_head(cli, runs, slow_writes=True)
    wait_for(ready, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert predictions(cli, photos, runs) == before
    result = cli("head", "--head", "logreg", "--param", "C=0.01", "--no-search", "--cache", cli.cache, "--runs", runs)
    assert result.exit_code == 0, result.output  # the killed holder's lock died with it
    assert not staging()


def test_a_full_disk_during_a_refit_leaves_the_old_head_predicting(fitted, tmp_path):
    cli, photos = fitted
    runs = copy_runs(cli, tmp_path)
    before = predictions(cli, photos, runs)
    full_disk = ("import errno, os\ndef full(descriptor): raise OSError(errno.ENOSPC, 'No space left on device')\n"
                 "os.fsync = full")
    result = cli_process("head", "--head", "logreg", "--param", "C=0.01", "--no-search", "--cache", cli.cache,
                         "--runs", runs, prelude=f"exec({full_disk!r})")
    one_error_line(result, "No space left on device", "--runs")
    assert predictions(cli, photos, runs) == before
    assert not list(runs.glob("*/.logreg.tmp-*"))


def test_a_run_being_written_is_refused_naming_its_holder(fitted, tmp_path):
    cli, _ = fitted
    runs = copy_runs(cli, tmp_path)
    (key,) = [p.name for p in runs.iterdir()]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
        "f.write('{\"pid\": %d, \"host\": \"h\"}' % os.getpid()); f.flush(); print('locked', flush=True); "
        "time.sleep(120)"), str(runs / key / ".logreg.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = cli("head", "--head", "logreg", "--no-search", "--cache", cli.cache, "--runs", runs)
        assert refused.exit_code == 1 and f"Process {holder.pid} on h is writing the run" in refused.output
    finally:
        holder.kill()
        holder.wait()
    with open(runs / key / ".logreg.lock") as lock:  # nobody holds it once the holder is gone
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert cli("head", "--head", "logreg", "--no-search", "--cache", cli.cache, "--runs", runs).exit_code == 0
