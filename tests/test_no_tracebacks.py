"""Every command, fed nonsense: a non-zero exit and one line saying why, never a traceback."""

import pytest

from tests.conftest import extract_args, make_cli, write_images


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A store of three classes with a fitted logreg head, shared by the cases below."""
    folder = tmp_path_factory.mktemp("fitted")
    data = folder / "photos"
    write_images(data, {"alpha": 12, "beta": 12, "gamma": 12})
    cli = make_cli(folder)
    assert cli(*extract_args(data, cli.cache)).exit_code == 0
    assert cli("head", "--head", "logreg", "--no-search", "--cache", cli.cache, "--runs", cli.runs).exit_code == 0
    cli.data = data
    return cli


def refused_cleanly(result, code=None):
    """Non-zero exit, no traceback, and (for the tool's own checks) exactly one error line."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if code is not None:
        assert result.exit_code == code, result.output
    if result.exit_code == 1 or "error:" in result.output:  # the tool's own checks, not click's
        assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1, result.output


BAD_FEATURES = [
    ("--image-size", "0"), ("--image-size", "100000"), ("--max-bad", "2"), ("--max-bad", "nan"),
    ("--max-bad", "-0.1"), ("--seed", "-1"), ("--val-fraction", "0"), ("--val-fraction", "1.5"),
    ("--passes", "-1"), ("--layout", "sideways"), ("--shard-size", "0"), ("--batch-size", "0"),
]


@pytest.mark.parametrize("option,value", BAD_FEATURES)
def test_features_refuses_nonsense_before_writing(fitted, tmp_path, option, value):
    cache = tmp_path / "cache"
    result = fitted(*extract_args(fitted.data, cache), option, value)
    refused_cleanly(result, code=2)
    assert not cache.exists() or not any(cache.iterdir())


def test_features_refuses_missing_or_wrong_paths(fitted, tmp_path):
    refused_cleanly(fitted(*extract_args(tmp_path / "missing", tmp_path / "c")), code=1)
    a_file = tmp_path / "file.jpg"
    a_file.write_bytes(b"x")
    refused_cleanly(fitted(*extract_args(a_file, tmp_path / "c")), code=1)
    args = extract_args(fitted.data, tmp_path / "c")
    args[args.index("none")] = str(tmp_path / "nowhere.h5")
    refused_cleanly(fitted(*args), code=1)


BAD_PARAMS = [
    ("dense", "units=0"), ("dense", "dropout=1"), ("dense", "epochs=0"), ("dense", "holdout=0"),
    ("dense", "holdout=1"), ("dense", "batch_size=0"), ("dense", "learning_rate=0"),
    ("dense", "learning_rate=-1"), ("logreg", "C=0"), ("logreg", "C=nan"), ("logreg", "C=inf"),
    ("logreg", "n_jobs=0"), ("svm", "C=-1"), ("svm", "solver=quantum"), ("logreg", "C=abc"),
    ("logreg", "depth=3"), ("logreg", "novalue"),
]


@pytest.mark.parametrize("head,param", BAD_PARAMS)
def test_head_refuses_bad_parameters_before_touching_the_saved_head(fitted, head, param):
    before = {p: p.read_bytes() for p in fitted.runs.rglob("*") if p.is_file()}
    result = fitted("head", "--head", head, "--param", param, "--cache", fitted.cache, "--runs", fitted.runs)
    refused_cleanly(result, code=2)  # a usage error
    assert param.split("=")[0] in result.output
    assert {p: p.read_bytes() for p in fitted.runs.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("heads", [",", " , ", "svm,nope", ""])
def test_compare_refuses_empty_or_unknown_heads(fitted, heads):
    refused_cleanly(fitted("compare", "--heads", heads, "--cache", fitted.cache, "--runs", fitted.runs))


def test_predict_and_export_refuse_bad_requests(fitted, tmp_path):
    common = ("--head", "logreg", "--cache", fitted.cache, "--runs", fitted.runs)
    refused_cleanly(fitted("predict", tmp_path / "missing.jpg", *common), code=1)
    refused_cleanly(fitted("predict", fitted.data, "--top-k", "0", *common), code=2)
    refused_cleanly(fitted("predict", fitted.data, "--export", tmp_path, "--head", "logreg"), code=1)
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep")
    refused_cleanly(fitted("export", "--out", a_file, *common), code=1)
    refused_cleanly(fitted("export", "--out", tmp_path / "x.keras", "--head", "svm", "--cache", fitted.cache,
                           "--runs", fitted.runs), code=1)
    assert a_file.read_text() == "keep"


def test_store_requests_name_the_missing_store(fitted, tmp_path):
    for command in ("head", "compare", "verify"):
        extra = ("--runs", fitted.runs) if command != "verify" else ()
        refused_cleanly(fitted(command, "--store", "0123456789abcdef", "--cache", fitted.cache, *extra), code=1)
        refused_cleanly(fitted(command, "--cache", tmp_path / "empty", *extra), code=1)


def test_nan_is_refused_wherever_a_number_is_taken(fitted, tmp_path):
    refused_cleanly(fitted(*extract_args(fitted.data, tmp_path / "c"), "--val-fraction", "nan"), code=2)


def run_cli(*args, cwd):
    """`python -m pipeline ARGS` in a real process, with a deadline so a hang fails the test."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, cwd=cwd,
                          timeout=300)


def test_a_fifo_and_a_non_utf8_name_in_real_processes(fitted, tmp_path):
    import os

    data = tmp_path / "photos"
    write_images(data, {"cats": 10, "dogs": 10})
    os.mkfifo(data / "cats" / "pipe.jpg")
    odd = os.path.join(os.fsencode(data / "dogs"), b"\xff odd.png")
    with open(odd, "wb") as copy:
        copy.write((data / "dogs" / "img_001.png").read_bytes())
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    built = run_cli(*extract_args(data, cache, "--max-bad", "0.1"), cwd=tmp_path)
    assert built.returncode == 0, built.stderr.decode()
    assert b"pipe.jpg" in built.stderr and b"Traceback" not in built.stderr
    # the head prints no file name: fitted in this process, between the two real ones
    fitted_head = make_cli(tmp_path)("head", "--head", "logreg", "--no-search", "--cache", cache, "--runs", runs)
    assert fitted_head.exit_code == 0, fitted_head.output
    predicted = run_cli("predict", data / "dogs", data / "cats" / "pipe.jpg", "--cache", cache, "--runs", runs,
                        cwd=tmp_path)
    assert predicted.returncode == 3 and b"Traceback" not in predicted.stderr
    lines = predicted.stdout.decode("utf-8").splitlines()  # valid UTF-8 whatever the names
    assert any("\\xff odd.png" in line for line in lines)
    assert any(line.split("\t")[:2] == [str(data / "cats" / "pipe.jpg"), "ERROR"] for line in lines)
