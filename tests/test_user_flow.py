"""The flow as a user types it: make targets, paths with ~, predict's formats, safe exports."""

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import QUICK_DENSE_PRELUDE, cli_process, extract_args, make_cli, write_images

REPO = Path(__file__).resolve().parents[1]


def make(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`make ARGS` in the repository, as a user runs it (the test suite's .venv is reused)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "--no-print-directory", "-C", str(cwd), *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_make_head_and_compare_fit_on_the_users_store_not_the_demo(tmp_path):
    photos = write_images(tmp_path / "my photos (2)", {"cats": 10, "dogs": 10})[0].parents[1]
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    common = [f"CACHE={cache}", f"RUNS={runs}"]

    nothing = make("head", *common)
    assert nothing.returncode != 0
    assert "make features DATA=" in nothing.stderr and "Traceback" not in nothing.stderr
    assert not cache.exists() or not any(cache.iterdir()), "head built a store without DATA"

    built = make("features", f"DATA={photos}", "WEIGHTS=none", "IMAGE_SIZE=32", "PRECISION=fp32", *common)
    assert built.returncode == 0, built.stderr
    (store,) = [p.parent for p in cache.glob("*/manifest.json")]
    assert json.loads((store / "manifest.json").read_text())["class_names"] == ["cats", "dogs"]

    # svm: not the default head (so HEAD and HEADS are seen to be passed on), and it fits in under a
    # second here, where the dense head trains for many epochs (it is fitted through the CLI, in
    # this process, by tests/test_cli.py and tests/test_compare_report.py).
    for target, heads in ((["head", "HEAD=svm"], ["svm"]), (["compare", "HEADS=logreg"], ["logreg", "svm"])):
        result = make(*target, *common)
        assert result.returncode == 0, result.stderr
        assert "digits demo" not in result.stderr
        assert sorted(p.parent.name for p in (runs / store.name).glob("*/run.json")) == heads
    assert [p.parent for p in cache.glob("*/manifest.json")] == [store], "another store was built"
    # stdout is the predictions alone (with DATA too, whose store is checked first): redirected, a CSV
    for data in ([], [f"DATA={photos}", "WEIGHTS=none", "IMAGE_SIZE=32", "PRECISION=fp32"]):
        predicted = make("predict", f'IMAGES="{photos}"', "HEAD=svm", "FORMAT=csv", *data, *common)
        assert predicted.returncode == 0, predicted.stderr
        rows = list(csv.DictReader(io.StringIO(predicted.stdout)))
        assert len(rows) == 20 and {row["class"] for row in rows} <= {"cats", "dogs"}
    board = json.loads((runs / store.name / "leaderboard.json").read_text())
    assert board["store_key"] == store.name


def test_compare_output_carries_no_tensorflow_developer_warnings(tmp_path):
    """The ensemble refits the dense head in every fold, one fresh network after another, and
    TensorFlow warns that it retraced a prediction function: a hint for its developers, which
    a user of the tool cannot act on. In a real process (its own TensorFlow and logging), with the
    dense head's defaults shortened to one network (the ensemble still refits it per fold)."""
    photos = write_images(tmp_path / "photos", {"cats": 10, "dogs": 10})[0].parents[1]
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    built = make_cli(tmp_path)(*extract_args(photos, cache))  # the store in this process: not the point
    assert built.exit_code == 0, built.output
    result = cli_process("compare", "--heads", "dense,ensemble", "--cache", cache, "--runs", runs,
                         prelude=QUICK_DENSE_PRELUDE)
    assert result.returncode == 0, result.stderr
    assert "Chosen:" in result.stdout + result.stderr
    assert "WARNING:tensorflow" not in result.stdout + result.stderr


def test_make_compare_in_a_fresh_clone_runs_the_demo_and_help_lists_every_variable(tmp_path):
    result = make("help")
    for variable in ("DATA", "LAYOUT", "WEIGHTS", "MAX_BAD", "HEAD", "HEADS", "STORE", "IMAGES", "FORMAT",
                     "TOP_K", "OUT", "FORCE", "CACHE", "RUNS", "PRECISION", "ENGINE", "BACKEND"):
        assert f"{variable}=" in result.stdout
    # What `make compare` will run without DATA: features first only when no store exists yet.
    dry = make("-n", "compare", f"CACHE={tmp_path / 'empty'}")
    assert "pipeline features" in dry.stdout and "pipeline compare" in dry.stdout
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "LATEST").write_text("0123456789abcdef\n")
    dry = make("-n", "compare", f"CACHE={tmp_path / 'full'}")
    assert "pipeline features" not in dry.stdout and "pipeline compare" in dry.stdout
    # The command make echoes is the one it runs, on one line, with the options set and no others.
    dry = make("-n", "features", "DATA=my photos", "PASSES=2", "QUALITY=max")
    assert dry.stdout.splitlines()[-1].endswith(
        'pipeline features --data "my photos" --image-size 320 --passes 2 --views 2 --backend local --cache "cache"')


def test_tilde_and_relative_paths_are_expanded(cli, tmp_path, monkeypatch):
    home = tmp_path / "home"
    write_images(home / "photos", {"a": 12, "b": 12})
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    result = cli("features", "--data", "~/photos", "--weights", "none", "--image-size", "32",
                 "--precision", "fp32", "--cache", "~/cache")
    assert result.exit_code == 0, result.output
    (manifest,) = list((home / "cache").glob("*/manifest.json"))
    assert json.loads(manifest.read_text())["data_root"] == str(home / "photos")
    relative = cli("head", "--head", "logreg", "--no-search", "--cache", "cache", "--runs", "~/runs")
    assert relative.exit_code == 0, relative.output
    assert list((home / "runs").glob("*/logreg/run.json"))


def test_user_data_without_real_weights_is_an_error_naming_the_fix(tmp_path):
    write_images(tmp_path / "photos", {"a": 4, "b": 4})
    env = {k: v for k, v in os.environ.items() if k != "VGG16_WEIGHTS"}
    # an unreachable proxy: the ImageNet download fails at once, online or not
    env.update(HOME=str(tmp_path), https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    result = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "pipeline", "features", "--data",
                             str(tmp_path / "photos"), "--cache", str(tmp_path / "cache")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "VGG16_WEIGHTS" in result.stderr and "--weights PATH" in result.stderr
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*/manifest.json"))


@pytest.fixture
def fitted_logreg(cli, flat_folder):
    assert cli(*extract_args(flat_folder, cli.cache)).exit_code == 0
    result = cli("head", "--head", "logreg", "--no-search", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 0, result.output
    return cli


def test_predict_formats_keep_one_record_per_file_whatever_its_name(fitted_logreg, flat_folder, tmp_path):
    cli = fitted_logreg
    new = tmp_path / "new"
    new.mkdir()
    source = next(flat_folder.glob("alpha/*.png"))
    names = ["tab\there.png", "new\nline.png", "plain,comma.png"]
    for name in names:
        (new / name).write_bytes(source.read_bytes())
    common = ("--head", "logreg", "--cache", cli.cache, "--runs", cli.runs)

    text = cli("predict", new, *common, "--top-k", "2")
    assert text.exit_code == 0, text.output
    assert "predict: 3/3 images" in text.stderr  # progress on stderr, the records alone on stdout
    lines = text.stdout.splitlines()
    assert len(lines) == 3 and all(len(line.split("\t")) == 5 for line in lines)
    assert {line.split("\t")[0].rsplit("/", 1)[1] for line in lines} == {
        "tab\\there.png", "new\\nline.png", "plain,comma.png"}

    table = list(csv.reader(io.StringIO(cli("predict", new, *common, "--format", "csv", "--all-classes").stdout)))
    assert table[0] == ["path", "class", "probability", "p(alpha)", "p(beta)", "p(gamma)", "error"]
    assert sorted(Path(row[0]).name for row in table[1:]) == sorted(names)
    for row in table[1:]:
        assert abs(sum(map(float, row[3:6])) - 1) < 1e-4 and float(row[2]) == max(map(float, row[3:6]))

    records = json.loads(cli("predict", new, *common, "--format", "json", "--top-k", "3").stdout)
    assert sorted(Path(r["path"]).name for r in records) == sorted(names)
    for record in records:
        assert set(record["probabilities"]) == {"alpha", "beta", "gamma"}
        assert [t["class"] for t in record["top"]][0] == record["class"] and len(record["top"]) == 3


@pytest.mark.parametrize("output_format", ["text", "csv", "json"])
def test_predict_writes_each_batch_as_it_comes_so_a_stopped_run_keeps_it(output_format):
    from pipeline.predict import Prediction
    from pipeline.predict_output import write_predictions

    def batches(stop: bool):
        yield [Prediction("a.jpg", np.array([0.9, 0.1])), Prediction("b.jpg", None, "OSError: gone")]
        if stop:
            raise KeyboardInterrupt  # Ctrl-C while the second batch is computed
        yield [Prediction("c,d.jpg", np.array([0.2, 0.8]))]

    written = []
    with pytest.raises(KeyboardInterrupt):
        write_predictions(batches(stop=True), ["cat", "dog"], output_format, written.append)
    kept = "".join(written)
    assert "a.jpg" in kept and "OSError: gone" in kept and "c,d.jpg" not in kept
    whole = []
    assert write_predictions(batches(stop=False), ["cat", "dog"], output_format, whole.append) == (3, 1)
    text = "".join(whole)
    if output_format == "json":
        assert [record["path"] for record in json.loads(text)] == ["a.jpg", "b.jpg", "c,d.jpg"]
    elif output_format == "csv":
        assert [row[:2] for row in csv.reader(io.StringIO(text))] == [
            ["path", "class"], ["a.jpg", "cat"], ["b.jpg", ""], ["c,d.jpg", "dog"]]
    else:
        assert text == "a.jpg\tcat\t0.9000\nb.jpg\tERROR\tOSError: gone\nc,d.jpg\tdog\t0.8000\n"


def test_predict_exit_codes(fitted_logreg, flat_folder, tmp_path):
    cli = fitted_logreg
    common = ("--head", "logreg", "--cache", cli.cache, "--runs", cli.runs)
    good = next(flat_folder.glob("beta/*.png"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert cli("predict", good, *common).exit_code == 0
    assert cli("predict", good, bad, *common).exit_code == 3
    assert cli("predict", bad, *common).exit_code == 1


def test_a_name_with_spaces_split_into_words_is_named_whole_in_the_error(fitted_logreg, tmp_path, monkeypatch):
    """`make predict IMAGES="my photos"` hands predict two words; the error says what exists."""
    cli = fitted_logreg
    write_images(tmp_path / "my photos", {"beta": 2})
    monkeypatch.chdir(tmp_path)
    result = cli("predict", "my", "photos", "--head", "logreg", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 1
    assert f"'{tmp_path / 'my photos'}' exists: a name with spaces was split; quote it" in result.output
    assert "Traceback" not in result.output


def test_a_folder_of_heic_photos_is_told_to_convert_them(fitted_logreg, tmp_path):
    cli = fitted_logreg
    (tmp_path / "phone").mkdir()
    (tmp_path / "phone" / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    result = cli("predict", tmp_path / "phone", "--head", "logreg", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 1
    assert "1 HEIC/HEIF file(s), a format this tool does not decode: convert them to JPEG or PNG" in result.output


def test_export_never_replaces_what_it_did_not_write(fitted_logreg, tmp_path):
    cli = fitted_logreg
    common = ("--head", "logreg", "--cache", cli.cache, "--runs", cli.runs)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    for flags in ((), ("--force",)):
        refused = cli("export", "--out", notes, *flags, *common)
        assert refused.exit_code == 1 and "not an earlier export" in refused.output
    assert (notes / "todo.txt").read_text() == "keep me"
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me too")
    assert cli("export", "--out", a_file, "--force", *common).exit_code == 1
    assert a_file.read_text() == "keep me too"
    refused = cli("export", "--out", cli.cache, "--force", *common)
    assert refused.exit_code == 1 and (cli.cache / "LATEST").is_file()

    out = tmp_path / "exported"
    assert cli("export", "--out", out, *common).exit_code == 0
    again = cli("export", "--out", out, *common)
    assert again.exit_code == 1 and "--force" in again.output
    forced = cli("export", "--out", out, "--force", *common)
    assert forced.exit_code == 0, forced.output
    assert (out / "export.json").is_file() and not list(tmp_path.glob(".exported*"))


def test_console_script_version_and_help_show_what_is_installed():
    script = REPO / ".venv" / "bin" / "bottleneck-heads"
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("bottleneck-heads ")
    helped = subprocess.run([str(script), "features", "--help"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert helped.returncode == 0
    words = " ".join(helped.stdout.split())  # as wrapped to the terminal
    assert "openvino, or auto (openvino for int8, for fp32 on CPUs with AVX2" in words and "pip install '.[dask]'" in words


def test_mixed_root_is_an_error_and_layout_flat_overrides_it(cli, tmp_path):
    root = tmp_path / "mixed"
    write_images(root, {"train": 8, "zebra": 8})
    refused = cli(*extract_args(root, cli.cache))
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "train" in refused.output and "zebra" in refused.output and "--layout flat" in refused.output
    assert not list(cli.cache.glob("*/manifest.json"))
    forced = cli(*extract_args(root, cli.cache, "--layout", "flat"))
    assert forced.exit_code == 0, forced.output
    (manifest,) = list(cli.cache.glob("*/manifest.json"))
    assert json.loads(manifest.read_text())["class_names"] == ["train", "zebra"]


def test_pytorch_style_train_val_folders_are_read_as_splits(cli, tmp_path):
    root = tmp_path / "hymenoptera"
    write_images(root / "train", {"ants": 6, "bees": 6})
    write_images(root / "val", {"ants": 3, "bees": 3}, start=100)
    result = cli(*extract_args(root, cli.cache))
    assert result.exit_code == 0, result.output
    (manifest,) = [json.loads(p.read_text()) for p in cli.cache.glob("*/manifest.json")]
    assert manifest["class_names"] == ["ants", "bees"]
    assert {s["split"] for s in manifest["sources"] if s["path"].startswith("val/")} == {"validation"}
