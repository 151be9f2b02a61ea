"""Hostile input and damaged stores: every command refuses a lie in one line, or is unaffected.

One store (two classes, one unreadable photo, one augmented pass) is extracted per module;
each test damages its own copy and drives the real CLI.
"""

import hashlib
import json
import math
from dataclasses import replace
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import BackboneSpec, ExtractConfig, resolve_weights, scan_dataset
from features.manifest import manifest_key, new_manifest, store_key
from tests.conftest import extract_args, make_cli, write_split_folder

OPTIONS = ("--shard-size", "6", "--passes", "1", "--max-bad", "0.1")
TIMINGS = ("fit_seconds", "predict_ms_per_image")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = write_split_folder(tmp_path_factory.mktemp("photos") / "photos", 10, 4)
    (root / "train" / "cats" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


@pytest.fixture(scope="module")
def pristine(photos, tmp_path_factory):
    """The folder holding the module's sound ``cache/``."""
    folder = tmp_path_factory.mktemp("pristine")
    result = make_cli(folder)(*extract_args(photos, folder / "cache", *OPTIONS))
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def sound_metrics(pristine, tmp_path_factory):
    cli = copy_of(pristine, tmp_path_factory.mktemp("sound"))
    return fit_metrics(cli)


def copy_of(pristine: Path, folder: Path):
    """A CLI whose cache is a fresh copy of the pristine one."""
    shutil.copytree(pristine / "cache", folder / "cache")
    return make_cli(folder)


def store_folder(cli) -> Path:
    return cli.cache / (cli.cache / "LATEST").read_text().strip()


def head(cli, *extra):
    return cli("head", "--head", "logreg", "--no-search", "--cache", cli.cache, "--runs", cli.runs, *extra)


def fit_metrics(cli) -> dict:
    result = head(cli)
    assert result.exit_code == 0, result.output
    return untimed(cli)


def untimed(cli) -> "Metrics":
    (metrics,) = cli.runs.glob("*/logreg/metrics.json")
    return Metrics({k: v for k, v in json.loads(metrics.read_text()).items() if k not in TIMINGS})


class Metrics(dict):
    """Validation metrics, equal to others that match them to 1e-4 relative: a fit on the same rows
    read in another order (a recomputed shard) stops lbfgs at a point a rounding away."""

    def __eq__(self, other):
        return matches(self, other)


def matches(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(matches(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(matches, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9)
    return a == b


def error_line(result) -> str:
    """The one ``error:`` line of a failed command, after checking it is a handled error."""
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in errors[0], result.output
    return errors[0]


def refused(result, *fragments: str) -> None:
    """The command failed with one line and nothing else, naming every fragment."""
    line = error_line(result)
    assert [line] == [text for text in result.output.splitlines() if text.strip()], result.output
    for fragment in fragments:
        assert fragment in line, line


def flip_byte(path: Path, position: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= mask
    path.write_bytes(bytes(data))


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True))


def test_key_is_the_same_from_the_inputs_and_from_the_manifest(photos, pristine):
    manifest = json.loads(next((pristine / "cache").glob("*/manifest.json")).read_text())
    assert manifest_key(manifest) == manifest["key"] == (pristine / "cache" / "LATEST").read_text().strip()

    dataset, spec = scan_dataset(photos), BackboneSpec(weights=resolve_weights("none"))
    for config in (ExtractConfig(replace(spec, image_size=32), shard_size=6), ExtractConfig(spec, passes=2, max_bad=0.5)):
        key = store_key(dataset, config)
        written = json.loads(json.dumps(new_manifest(dataset, config, key)))
        assert manifest_key(written) == key
    assert store_key(dataset, ExtractConfig(spec, max_bad=0.9)) == store_key(dataset, ExtractConfig(spec))


def test_a_flipped_byte_in_a_shard_is_refused(pristine, tmp_path):
    cli = copy_of(pristine, tmp_path)
    flip_byte(store_folder(cli) / "train" / "pass-0" / "shard-00001.npy", -3)
    refused(head(cli), "train/pass-0/shard-00001.npy", "sha256", "`features`")


@pytest.mark.parametrize("rehashed", [False, True], ids=["file", "file-and-recorded-sha256"])
def test_inverted_validation_labels_are_refused(pristine, tmp_path, rehashed):
    cli = copy_of(pristine, tmp_path)
    folder = store_folder(cli)
    labels = folder / "validation" / "pass-0" / "shard-00000.labels.npy"
    np.save(labels, 1 - np.load(labels))
    if rehashed:  # the manifest is made to vouch for the new file: alignment still catches it
        digest = hashlib.sha256(labels.read_bytes()).hexdigest()
        edit_manifest(folder, lambda m: next(e for e in m["shards"] if e["name"] == "validation/pass-0/shard-00000")
                      ["sha256"].update(labels=digest))
    refused(head(cli), "validation/pass-0/shard-00000", "`features`")


def test_a_shard_copied_from_another_store_is_refused(photos, pristine, tmp_path):
    cli = copy_of(pristine, tmp_path)
    ours = store_folder(cli)
    assert cli(*extract_args(photos, cli.cache, *OPTIONS, "--seed", "1")).exit_code == 0
    theirs = store_folder(cli)
    assert theirs != ours
    for path in (theirs / "train" / "pass-1").glob("shard-00002*"):
        shutil.copy(path, ours / "train" / "pass-1" / path.name)
    refused(head(cli, "--store", ours.name), "train/pass-1/shard-00002", "sha256")


def test_a_deleted_shard_is_recomputed_by_features(photos, pristine, sound_metrics, tmp_path):
    cli = copy_of(pristine, tmp_path)
    folder = store_folder(cli)
    original = (folder / "train" / "pass-1" / "shard-00000.npy").read_bytes()
    (folder / "train" / "pass-1" / "shard-00000.npy").unlink()
    result = cli(*extract_args(photos, cli.cache, *OPTIONS))
    assert result.exit_code == 0, result.output
    assert "1 shard(s) missing, damaged or misrecorded (first: train/pass-1/shard-00000)" in result.output
    assert "up to date" not in result.output and "Computed 1 shard(s)" in result.output
    assert (folder / "train" / "pass-1" / "shard-00000.npy").read_bytes() == original
    assert fit_metrics(cli) == sound_metrics


def test_a_tightened_max_bad_fails_on_rerun(photos, pristine, tmp_path):
    cli = copy_of(pristine, tmp_path)
    line = error_line(cli(*extract_args(photos, cli.cache, *OPTIONS, "--max-bad", "0")))
    assert "1 of 29 images could not be read" in line and "--max-bad" in line


def test_reordered_class_names_are_refused_and_rebuilt(photos, pristine, sound_metrics, tmp_path):
    cli = copy_of(pristine, tmp_path)
    edit_manifest(store_folder(cli), lambda m: m["class_names"].reverse())
    refused(head(cli), "manifest.json", "not to its key")
    refused(cli("verify", "--cache", cli.cache), "not to its key")
    rebuilt = cli(*extract_args(photos, cli.cache, *OPTIONS))
    assert rebuilt.exit_code == 0 and "up to date" not in rebuilt.output, rebuilt.output
    assert cli("verify", "--cache", cli.cache).exit_code == 0
    assert fit_metrics(cli) == sound_metrics


@pytest.mark.parametrize("keep", [0.5, 0.0], ids=["truncated", "empty"])
def test_a_damaged_manifest_is_one_line_and_rebuilt(photos, pristine, sound_metrics, tmp_path, keep):
    cli = copy_of(pristine, tmp_path)
    manifest = store_folder(cli) / "manifest.json"
    sound = manifest.read_bytes()
    manifest.write_bytes(sound[:int(len(sound) * keep)])
    refused(head(cli), "manifest.json", "cannot be read as JSON", "`features`")
    rebuilt = cli(*extract_args(photos, cli.cache, *OPTIONS))
    assert rebuilt.exit_code == 0, rebuilt.output
    before, after = json.loads(sound), json.loads(manifest.read_text())
    assert after["complete"] and (after["key"], after["shards"]) == (before["key"], before["shards"])
    assert fit_metrics(cli) == sound_metrics


@pytest.mark.parametrize("damage", ["truncated run.json", "missing metrics.json"])
def test_a_damaged_run_is_one_line(photos, pristine, tmp_path, damage):
    cli = copy_of(pristine, tmp_path)
    fit_metrics(cli)
    (run,) = cli.runs.glob("*/logreg")
    if damage == "truncated run.json":
        (run / "run.json").write_text((run / "run.json").read_text()[:40])
    else:
        (run / "metrics.json").unlink()
    image = next((photos / "validation" / "cats").iterdir())
    result = cli("predict", image, "--head", "logreg", "--cache", cli.cache, "--runs", cli.runs)
    refused(result, damage.split()[-1], "missing or damaged", "--head logreg")


def test_runs_that_cannot_be_written_are_one_line(pristine, tmp_path):
    cli = copy_of(pristine, tmp_path)
    cli.runs.write_text("a file where the runs folder should go")
    refused(head(cli), str(cli.runs), "--runs")


def test_a_latest_that_cannot_be_replaced_is_one_line(photos, pristine, tmp_path):
    cli = copy_of(pristine, tmp_path)
    (cli.cache / "LATEST").unlink()
    (cli.cache / "LATEST").mkdir()  # os.replace cannot put a file over a folder
    line = error_line(cli(*extract_args(photos, cli.cache, *OPTIONS)))
    assert f"Could not write {cli.cache / 'LATEST'}" in line and "--cache" in line


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_a_random_flipped_byte_is_refused_or_harmless(pristine, sound_metrics, tmp_path_factory, data):
    cli = copy_of(pristine, tmp_path_factory.mktemp("flip"))
    files = sorted(p for p in store_folder(cli).rglob("*") if p.is_file())
    path = data.draw(st.sampled_from(files), label="file")
    position = data.draw(st.integers(0, path.stat().st_size - 1), label="byte")
    flip_byte(path, position, data.draw(st.integers(1, 255), label="xor mask"))
    result = head(cli)
    if result.exit_code == 0:
        assert untimed(cli) == sound_metrics
    else:
        refused(result)
