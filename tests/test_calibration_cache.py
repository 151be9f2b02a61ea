"""int8 calibration is paid once per weights and image size: later stores reuse the cached model."""

import json
import shutil

import numpy as np
import pytest

from features import FeatureStore
from features.calibration import CACHE_DIR, MODEL_FILES, PROVENANCE_FILE
from features.engines import int8_model_path
from features.spec import engine_installed as openvino_installed
from features.manifest import manifest_key
from tests.conftest import extract_args, make_cli, write_images, write_split_folder

pytestmark = pytest.mark.skipif(not openvino_installed(), reason="the fast extra (openvino, nncf) is not installed")

INT8 = ("--image-size", "64", "--precision", "int8", "--calibration-images", "8")


def latest(cli) -> FeatureStore:
    return FeatureStore(cli.cache / (cli.cache / "LATEST").read_text().strip())


def cache_entry(cli):
    (entry,) = [p for p in (cli.cache / CACHE_DIR).iterdir() if not p.name.startswith(".")]
    return entry


def test_a_second_store_reuses_the_calibrated_model_and_recalibrate_makes_a_new_one(cli, tmp_path):
    first_data = write_split_folder(tmp_path / "first", 6, 3)
    result = cli(*extract_args(first_data, cli.cache, *INT8))
    assert result.exit_code == 0, result.output
    assert "Calibrating int8 on 8 training images at 32 px" in result.output  # half the 64 px images
    first = latest(cli)
    entry = cache_entry(cli)
    provenance = json.loads((entry / PROVENANCE_FILE).read_text())
    assert provenance["data_root"] == str(first_data.resolve()) and len(provenance["sources"]) == 8
    assert provenance["calibration_image_size"] == 32 and provenance["image_size"] == 64
    assert {"date", "software", "sha256"} <= provenance.keys() and "openvino" in provenance["software"]
    assert first.manifest["int8"]["model"] == entry.name
    assert first.manifest["int8"]["calibration"] == provenance
    assert manifest_key(first.manifest) == first.key  # the model's identity is in the key

    # another store: photos added, another pooling, the same weights and size: no calibration
    second_data = write_split_folder(tmp_path / "second", 6, 3)
    write_images(second_data / "train", {"cats": 3, "dogs": 3}, start=50)
    stamp = (entry / MODEL_FILES[1]).stat().st_mtime_ns
    result = cli(*extract_args(second_data, cli.cache, *INT8, "--pooling", "max"))
    assert result.exit_code == 0, result.output
    assert "Calibrating" not in result.output and "reusing the model calibrated on 8 images" in result.output
    second = latest(cli)
    assert second.key != first.key and cache_entry(cli) == entry
    assert (entry / MODEL_FILES[1]).stat().st_mtime_ns == stamp  # the cache entry was not rewritten
    assert second.manifest["int8"]["identity"] == first.manifest["int8"]["identity"]
    assert second.manifest["int8"]["calibration"]["data_root"] == str(first_data.resolve())
    for name in MODEL_FILES:  # the store holds the very model (hard-linked where possible)
        assert (second.folder / "int8" / name).read_bytes() == (entry / name).read_bytes()
    assert cli("verify", "--store", second.key, "--cache", cli.cache).exit_code == 0

    # --recalibrate calibrates on the current data and replaces the cache entry
    result = cli(*extract_args(second_data, cli.cache, *INT8, "--pooling", "max", "--recalibrate"))
    assert result.exit_code == 0, result.output
    assert "Calibrating int8 on 8 training images" in result.output
    recalibrated = latest(cli)
    provenance = json.loads((cache_entry(cli) / PROVENANCE_FILE).read_text())
    assert provenance["data_root"] == str(second_data.resolve())
    assert recalibrated.manifest["int8"]["calibration"]["data_root"] == str(second_data.resolve())
    assert recalibrated.manifest["int8"]["identity"] != second.manifest["int8"]["identity"]
    assert recalibrated.key != second.key and manifest_key(recalibrated.manifest) == recalibrated.key
    # the stores made with the replaced model still hold it and still verify
    for store in (first, second):
        assert cli("verify", "--store", store.key, "--cache", cli.cache).exit_code == 0


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """A split folder extracted in int8 with each pooling, in that order, into one new cache:
    (cli, data, {pooling: (features' output, store key, training rows)}), made once."""
    folder = tmp_path_factory.mktemp("pooled")
    data = write_split_folder(folder / "split", 10, 4)
    cli = make_cli(folder)
    made = {}
    for pooling in ("none", "avg", "max"):
        result = cli(*extract_args(data, cli.cache, *INT8, "--pooling", pooling))
        assert result.exit_code == 0, result.output
        made[pooling] = (result.output, latest(cli).key, latest(cli).split_arrays("train"))
    return cli, data, made


def test_one_calibrated_model_serves_every_pooling(pooled):
    _, _, made = pooled
    stores = {}
    for pooling, (output, _, rows) in made.items():
        assert ("Calibrating" in output) == (pooling == "none")
        stores[pooling] = rows
    maps = stores["none"]["features"]
    assert maps.shape[1:] == (2, 2, 512)
    np.testing.assert_array_equal(stores["avg"]["sources"], stores["none"]["sources"])
    np.testing.assert_allclose(stores["avg"]["features"], maps.mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(stores["max"]["features"], maps.max(axis=(1, 2)))


def test_a_store_whose_model_is_lost_gets_it_back_from_the_cache(pooled, tmp_path):
    """On a copy of ``pooled``'s cache: its avg store, and the model cached when it was made."""
    made_by, split_folder, made = pooled
    shutil.copytree(made_by.cache, tmp_path / "cache")
    cli = make_cli(tmp_path)
    store = FeatureStore(cli.cache / made["avg"][1])
    for path in (store.folder / "int8").iterdir():
        path.unlink()
    manifest = json.loads((store.folder / "manifest.json").read_text())
    manifest["shards"], manifest["complete"] = manifest["shards"][:1], False
    (store.folder / "manifest.json").write_text(json.dumps(manifest))
    result = cli(*extract_args(split_folder, cli.cache, *INT8, "--pooling", "avg"))
    assert result.exit_code == 0, result.output
    assert "Calibrating" not in result.output and latest(cli).key == store.key
    assert int8_model_path(store.folder).is_file()
    assert cli("verify", "--store", store.key, "--cache", cli.cache).exit_code == 0
