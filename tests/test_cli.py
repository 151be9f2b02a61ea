"""The command line as a user drives it: help, the whole flow, and one line per bad input."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import extract_args, write_images, write_split_folder

COMMANDS = ("features", "head", "compare", "predict", "verify", "export")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output and "--cache" in result.output


def test_module_entry_point_runs_in_a_real_process():
    result = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True,
                            cwd=Path(__file__).parents[1], timeout=120)
    assert result.returncode == 0
    assert all(command in result.stdout for command in COMMANDS)


def fitted(cli, data, *heads):
    assert cli(*extract_args(data, cli.cache)).exit_code == 0
    for name in heads:
        result = cli("head", "--head", name, "--cache", cli.cache, "--runs", cli.runs)
        assert result.exit_code == 0, result.output


def test_head_writes_model_run_and_metrics(cli, flat_folder):
    fitted(cli, flat_folder)
    result = cli("head", "--head", "logreg", "--param", "C=0.1", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 0, result.output
    (run,) = list(cli.runs.glob("*/logreg"))
    info = json.loads((run / "run.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert info["params"]["C"] == 0.1 and info["store_key"] == run.parent.name
    assert set(info["model_sha256"]) == {"model.skops"}
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "fit_seconds",
                "predict_ms_per_image", "confusion_matrix", "per_class"):
        assert key in metrics
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n_samples"]
    assert set(metrics["per_class"]) == {"alpha", "beta", "gamma"}
    searched = cli("head", "--head", "logreg", "--cache", cli.cache, "--runs", cli.runs)
    assert searched.exit_code == 0, searched.output
    assert "fitted: searched C=" in searched.output and " by log loss (grouped CV balanced accuracy " in searched.output


def test_head_says_how_the_dense_networks_were_trained(cli, flat_folder):
    fitted(cli, flat_folder)
    result = cli("head", "--head", "dense", "--param", "networks=2", "--param", "epochs=3",
                 "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 0, result.output
    assert re.search(r"fitted: 2 networks averaged, trained \d and \d epochs? \(early stopping on a grouped "
                     r"holdout\); then refitted on all \d+ training rows", result.output), result.output


def test_predict_text_and_json(cli, flat_folder, tmp_path):
    fitted(cli, flat_folder, "svm")
    new = tmp_path / "new"
    write_images(new, {"x": 2}, start=700)
    (new / "x" / "bad.png").write_bytes(b"nope")
    args = ("predict", new, "--head", "svm", "--cache", cli.cache, "--runs", cli.runs)
    text = cli(*args)
    assert text.exit_code == 3, text.output  # some images unreadable, the rest classified
    lines = [line.split("\t") for line in text.stdout.strip().splitlines()]
    assert len(lines) == 3 and lines[0][1] == "ERROR" and "bad.png" in lines[0][0]
    assert all(line[1] in ("alpha", "beta", "gamma") and 0 < float(line[2]) <= 1 for line in lines[1:])
    as_json = json.loads(cli(*args, "--format", "json").stdout)
    assert [p["class"] for p in as_json] == [line[1] if line[1] != "ERROR" else None for line in lines]


def test_demo_dataset_is_the_default(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("features", "--weights", "none", "--cache", cli.cache)
    assert result.exit_code == 0, result.output
    assert "built-in digits demo" in result.output
    assert sorted(p.name for p in (tmp_path / "data" / "digits").iterdir() if p.is_dir()) == list("0123456789")
    assert "train" in result.output and "10 classes" in result.output


def one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0]


def test_features_names_classes_with_under_half_the_largest_classs_training_photos(cli, tmp_path):
    """Moths, with half the ants' photos, are not named."""
    write_images(tmp_path / "uneven" / "train", {"ants": 12, "bees": 5, "moths": 6, "wasps": 5})
    write_images(tmp_path / "uneven" / "validation", {"ants": 2, "bees": 2, "moths": 2, "wasps": 2}, start=100)
    result = cli(*extract_args(tmp_path / "uneven", cli.cache))
    assert result.exit_code == 0, result.output
    assert "Uneven classes: 5 to 12 training photos a class; under half the largest: bees, wasps." in result.output
    even = cli(*extract_args(write_split_folder(tmp_path / "even", 4, 2), cli.cache))
    assert even.exit_code == 0, even.output
    assert "Uneven" not in even.output


def test_bad_data_folders(cli, tmp_path):
    one_line_error(cli(*extract_args(tmp_path / "missing", cli.cache)), "Data folder not found", "--data")
    (tmp_path / "empty").mkdir()
    one_line_error(cli(*extract_args(tmp_path / "empty", cli.cache)), "No images in")
    write_images(tmp_path / "one", {"solo": 4})
    (tmp_path / "one" / "hollow").mkdir()
    one_line_error(cli(*extract_args(tmp_path / "one", cli.cache)), "Only one class with images")
    write_images(tmp_path / "split" / "train", {"a": 4})
    write_images(tmp_path / "split" / "validation", {"a": 2, "b": 2})
    one_line_error(cli(*extract_args(tmp_path / "split", cli.cache)), "train/ lacks: b")
    # An archive unpacked into a folder of its name: one "class" of class folders; the archive itself.
    write_images(tmp_path / "unpacked" / "flowers", {"roses": 3, "tulips": 3})
    one_line_error(cli(*extract_args(tmp_path / "unpacked", cli.cache)), "Only one class with images",
                   "Its images lie in 2 subfolders (roses, tulips): if those are the classes, pass --data "
                   f"{tmp_path / 'unpacked' / 'flowers'}.")
    # ... and one of split folders, which reads as one class laid out class first.
    write_images(tmp_path / "wrapped" / "dataset" / "train", {"roses": 3, "tulips": 3})
    write_images(tmp_path / "wrapped" / "dataset" / "val", {"roses": 2, "tulips": 2}, start=10)
    one_line_error(cli(*extract_args(tmp_path / "wrapped", cli.cache)), "Only one class with images",
                   "Its images lie in 2 subfolders of its split folders (roses, tulips): if those are the "
                   f"classes, pass --data {tmp_path / 'wrapped' / 'dataset'}.")
    (tmp_path / "flowers.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    one_line_error(cli(*extract_args(tmp_path / "flowers.zip", cli.cache)), "flowers.zip is a file, not a folder. "
                   "Unpack the archive and pass --data a folder")


def test_a_split_folder_given_alone_names_the_data_that_reads_its_siblings(cli, split_folder):
    result = cli(*extract_args(split_folder / "train", cli.cache))
    assert result.exit_code == 0, result.output
    warning = " ".join(result.output.split())
    assert (f"warning: {split_folder / 'train'} is a split folder read alone (beside it, not read: validation); "
            f"its photos are split by hash. To use the split folders as they are, pass --data {split_folder}.") in warning


def test_unreadable_files_beyond_the_limit_fail(cli, tmp_path):
    write_images(tmp_path / "d", {"a": 12, "b": 12})
    (tmp_path / "d" / "a" / "text.jpg").write_text("just text")
    good = (tmp_path / "d" / "b" / "img_000.JPG").read_bytes()
    (tmp_path / "d" / "b" / "cut.jpg").write_bytes(good[: len(good) // 3])
    one_line_error(cli(*extract_args(tmp_path / "d", cli.cache)), "2 of 26 images could not be read",
                   "--max-bad")


def test_bad_weights_path(cli, flat_folder, tmp_path):
    args = extract_args(flat_folder, cli.cache)
    args[args.index("none")] = str(tmp_path / "nowhere.h5")
    one_line_error(cli(*args), "Weights file not found", "--weights")
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    args[args.index(str(tmp_path / "nowhere.h5"))] = str(junk)
    one_line_error(cli(*args), "Could not load VGG16 weights", "--weights")


def test_dask_backend_without_dask_names_the_install(cli, flat_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the dask extra were not installed
    one_line_error(cli(*extract_args(flat_folder, cli.cache, "--backend", "dask")),
                   "--backend dask needs Dask, which is not installed", "pip install '.[dask]'")


def test_bad_head_requests(cli, flat_folder):
    common = ("--cache", cli.cache, "--runs", cli.runs)
    one_line_error(cli("head", "--head", "logreg", *common), "No feature store",
                   f"make features DATA=path/to/photos CACHE={cli.cache}",
                   f"bottleneck-heads features --data path/to/photos --cache {cli.cache}")
    fitted(cli, flat_folder)
    forest = cli("head", "--head", "forest", *common)  # a choice: click's usage error
    assert forest.exit_code == 2 and "'forest' is not one of 'dense', 'logreg', 'svm'" in forest.output
    one_line_error(cli("head", "--head", "svm", "--param", "depth=3", *common), "Unknown parameter 'depth'")
    one_line_error(cli("compare", "--heads", "svm,nope", *common), "Unknown head 'nope'")
    key = (cli.cache / "LATEST").read_text().strip()
    one_line_error(cli("predict", flat_folder, "--head", "dense", *common), "No fitted 'dense' head",
                   f"make head HEAD=dense STORE={key} CACHE={cli.cache} RUNS={cli.runs}",
                   f"bottleneck-heads head --head dense --store {key} --cache {cli.cache} --runs {cli.runs}")


def test_head_from_another_store_is_refused(cli, flat_folder):
    fitted(cli, flat_folder, "logreg")
    (old_run,) = list(cli.runs.glob("*/logreg"))
    assert cli(*extract_args(flat_folder, cli.cache, "--image-size", "40")).exit_code == 0
    new_key = (cli.cache / "LATEST").read_text().strip()
    assert new_key != old_run.parent.name
    shutil.copytree(old_run, cli.runs / new_key / "logreg")
    one_line_error(cli("predict", flat_folder, "--head", "logreg", "--cache", cli.cache, "--runs", cli.runs),
                   old_run.parent.name, f"make head HEAD=logreg STORE={new_key} CACHE={cli.cache} RUNS={cli.runs}")


def test_tampered_head_is_refused(cli, flat_folder):
    fitted(cli, flat_folder, "logreg")
    (model,) = list(cli.runs.glob("*/logreg/model/model.skops"))
    model.write_bytes(model.read_bytes() + b"\0")
    one_line_error(cli("predict", flat_folder, "--head", "logreg", "--cache", cli.cache, "--runs", cli.runs),
                   "does not match the sha256", f"make head HEAD=logreg STORE={model.parents[2].name} CACHE={cli.cache}")


def test_usage_errors_exit_2_everywhere(cli, flat_folder):
    """One convention, click's: a bad option value is a usage error, exit 2, whoever checks it."""
    common = ("--cache", cli.cache, "--runs", cli.runs)
    for args in [extract_args(flat_folder, cli.cache, "--image-size", "7"), ["compare", "--heads", "", *common],
                 ["head", "--head", "bogus", *common], ["head", "--param", "C=-1", *common],
                 ["compare", "--heads", "svm,nope", *common], ["export", "--head", "bogus", "--out", "x", *common]]:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_shell_completion_is_available():
    """As typed at a bash prompt: typer finds the shell among the process's ancestors."""
    from tests.conftest import cli_process

    repo = Path(__file__).resolve().parents[1]
    shown = subprocess.run(["bash", "-c", f"'{sys.executable}' -m pipeline --show-completion; exit $?"], cwd=repo,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "complete -o" in shown.stdout, shown.stderr
    assert "--install-completion" in cli_process("--help", timeout=120).stdout


def test_keras_download_messages_go_to_stderr(tmp_path):
    """A real download attempt (through a proxy that refuses, so it fails at once): Keras' own
    "Downloading data from" line must not mix with results on stdout."""
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "VGG16_WEIGHTS": ""}
    program = "from features.weights import resolve_weights; resolve_weights('imagenet')"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                            env=env, cwd=Path(__file__).resolve().parents[1])
    assert "Downloading data from" in result.stderr and result.stdout == "", result
