"""The OpenVINO engine: int8 stores calibrated once and kept with the store, fp32 agreement, errors."""

import json
import shlex
import shutil
from dataclasses import replace

import numpy as np
import pytest

from features import BackboneSpec, FeatureError, FeatureStore, open_engine, resolve_weights, scan_dataset
from features.calibration import calibration_sources
from features.engines import int8_model_path
from features.spec import engine_installed as openvino_installed
from features.spec import resolve_engine
from tests.conftest import cli_process, extract_args

needs_openvino = pytest.mark.skipif(not openvino_installed(),
                                    reason="the fast extra (openvino, nncf) is not installed")


def cosine(a, b):
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def store_by_precision(cache):
    return {FeatureStore(p.parent).manifest["config"]["precision"]: FeatureStore(p.parent)
            for p in cache.glob("*/manifest.json")}


@needs_openvino
def test_int8_store_is_calibrated_once_kept_in_the_store_and_close_to_fp32(cli, split_folder):
    """(Reuse of the calibrated model by other stores: tests/test_calibration_cache.py.)"""
    settings = ("--image-size", "64", "--calibration-images", "12")
    assert cli(*extract_args(split_folder, cli.cache, *settings, "--precision", "fp32")).exit_code == 0
    result = cli(*extract_args(split_folder, cli.cache, *settings, "--precision", "int8"))
    assert result.exit_code == 0, result.output
    assert "Calibrating int8 on 12 training images" in result.output
    stores = store_by_precision(cli.cache)
    int8 = stores["int8"]
    assert int8.manifest["config"]["engine"] == "openvino"
    assert int8_model_path(int8.folder).is_file()
    assert len(int8.manifest["int8"]["calibration"]["sources"]) == 12
    fp32_rows, int8_rows = (stores[p].split_arrays("train") for p in ("fp32", "int8"))
    np.testing.assert_array_equal(fp32_rows["sources"], int8_rows["sources"])
    assert not np.array_equal(fp32_rows["features"], int8_rows["features"])
    assert cosine(fp32_rows["features"], int8_rows["features"]).min() > 0.98

    # an interrupted int8 store resumes with its calibrated model, without calibrating again
    manifest = json.loads((int8.folder / "manifest.json").read_text())
    manifest["shards"] = manifest["shards"][:1]
    manifest["complete"] = False
    (int8.folder / "manifest.json").write_text(json.dumps(manifest))
    model_bytes = int8_model_path(int8.folder).with_suffix(".bin").read_bytes()
    result = cli(*extract_args(split_folder, cli.cache, *settings, "--precision", "int8"))
    assert result.exit_code == 0, result.output
    assert "Resuming store" in result.output and "Calibrating" not in result.output
    assert int8_model_path(int8.folder).with_suffix(".bin").read_bytes() == model_bytes
    assert cli("verify", "--store", int8.key, "--cache", cli.cache).exit_code == 0

    # predict, and an exported sklearn head, run the same calibrated model
    common = ("--store", int8.key, "--cache", cli.cache, "--runs", cli.runs)
    assert cli("head", "--head", "logreg", "--no-search", *common).exit_code == 0
    image = split_folder / "validation" / "dogs" / "img_100.JPG"
    from_store = cli("predict", image, "--head", "logreg", "--format", "json", *common)
    assert from_store.exit_code == 0, from_store.output
    out = cli.runs.parent / "exported"
    assert cli("export", "--head", "logreg", "--out", out, *common).exit_code == 0
    assert (out / "int8" / "vgg16-int8.xml").is_file()
    from_export = cli("predict", image, "--export", out, "--format", "json")
    assert json.loads(from_export.stdout) == json.loads(from_store.stdout)

    # a store that lost its int8 model refuses to predict, naming the command that repairs it
    shutil.rmtree(int8_model_path(int8.folder).parent)
    refused = cli("predict", image, "--head", "logreg", "--format", "json", *common)
    assert refused.exit_code == 1 and "int8 model" in refused.output
    repair = " ".join(refused.output.split()).split("(or `bottleneck-heads ")[1].split("`)")[0]
    assert "--precision int8" in repair and "--calibration-images 12" in repair
    assert cli(*shlex.split(repair)).exit_code == 0
    repaired = cli("predict", image, "--head", "logreg", "--format", "json", *common)
    assert json.loads(repaired.stdout) == json.loads(from_store.stdout)


@needs_openvino
def test_openvino_fp32_matches_keras_and_batch_size_has_no_effect():
    spec = BackboneSpec(resolve_weights("none"), image_size=64, batch_size=8)
    images = np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3)).astype(np.float32)
    keras_engine = open_engine(spec)
    openvino_engine = open_engine(replace(spec, engine="openvino"))
    full = openvino_engine(images)
    assert cosine(full, keras_engine(images)).min() > 0.9999
    np.testing.assert_allclose(openvino_engine(images[:3]), full[:3], rtol=1e-5, atol=1e-5)
    assert openvino_engine(np.concatenate([images, images[:2]])).shape == (10, 2560)  # blocks


@needs_openvino
@pytest.mark.parametrize("pooling", ["blocks", "avg", "max", "avgmax", "none"])
def test_a_maps_model_pooled_by_the_engine_gives_every_pooling_as_the_pooled_graph_does(pooling):
    """What the int8 engine does with its calibrated model (blocks 3, 4 and 5's maps out):
    the features of the fp32 graph built with that pooling, to the bit."""
    from features.engines.openvino_engine import OpenVinoEngine, to_openvino
    from features.engines.vgg16_graph import BLOCK_MAPS

    spec = BackboneSpec(resolve_weights("none"), image_size=64, engine="openvino", pooling=pooling)
    images = np.random.default_rng(0).uniform(0, 255, (5, 64, 64, 3)).astype(np.float32)
    maps_model = to_openvino(spec, 5, BLOCK_MAPS)
    pooled = OpenVinoEngine(maps_model, spec, pool_maps=True)(images)
    np.testing.assert_array_equal(pooled, OpenVinoEngine(to_openvino(spec, 5), spec)(images))
    assert len(maps_model.outputs) == 3  # the caller's model is left as it was


@needs_openvino
def test_maps_laid_out_channels_last_by_another_graph_are_pooled_over_their_rows_and_columns():
    import openvino as ov
    import openvino.opset13 as ops

    from features.engines.openvino_engine import OpenVinoEngine

    maps = np.random.default_rng(1).uniform(-1, 1, (3, 4, 5, 512)).astype(np.float32)
    parameter = ops.parameter(list(maps.shape), np.float32)
    model = ov.Model([ops.relu(parameter)], [parameter])
    spec = BackboneSpec(resolve_weights("none"), image_size=64, engine="openvino", pooling="avgmax")
    positive = np.maximum(maps, 0)
    np.testing.assert_allclose(OpenVinoEngine(model, spec, pool_maps=True)(maps),
                               np.concatenate([positive.mean((1, 2)), positive.max((1, 2))], 1), rtol=1e-6)


def test_calibration_sample_is_fixed_and_spans_the_classes(flat_folder):
    dataset = scan_dataset(flat_folder)
    sample = calibration_sources(dataset, 6)
    assert sample == calibration_sources(scan_dataset(flat_folder), 6) and len(set(sample)) == 6
    assert all(dataset.sources[i].split == "train" for i in sample)
    assert {dataset.sources[i].label for i in sample} == {0, 1, 2}


def test_int8_is_refused_on_keras_and_auto_picks_openvino():
    with pytest.raises(FeatureError, match="int8 runs on OpenVINO only"):
        resolve_engine("keras", "int8")
    if openvino_installed():
        assert resolve_engine("auto", "int8") == "openvino"


def test_int8_without_the_fast_extra_names_the_fix(tmp_path, flat_folder):
    """A real process in which openvino cannot be imported, as on an install without the extra."""
    result = cli_process(*extract_args(flat_folder, tmp_path / "cache"), "--precision", "int8",
                         prelude="sys.modules['openvino'] = None", timeout=120)
    assert result.returncode == 1, result.stderr
    assert "pip install openvino nncf" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
