"""`blocks` pooling: the average and max of blocks 3, 4 and 5 from one pass, as named column groups
recorded in the manifest and the store key, on every engine (int8 included, its drift guard per group)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from features import FeatureStore, VGG16Features, load_store
from features.engines import open_engine
from features.manifest import manifest_problem
from features.spec import BackboneSpec, engine_installed
from features.weights import resolve_weights
from tests.conftest import extract_args

RANDOM = resolve_weights("none")
GROUPS = {"block3_avg": [0, 256], "block3_max": [256, 512], "block4_avg": [512, 1024],
          "block4_max": [1024, 1536], "block5_avg": [1536, 2048], "block5_max": [2048, 2560]}


def test_blocks_are_each_blocks_average_then_max_from_one_pass_on_every_engine():
    spec = BackboneSpec(RANDOM, image_size=64, pooling="blocks")
    assert spec.feature_shape == (2560,) and spec.column_groups == GROUPS
    images = np.random.default_rng(3).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    blocks = open_engine(spec)(images)
    block4 = open_engine(replace(spec, pooling="block4_pool"))(images)  # block4_pool's maps
    np.testing.assert_allclose(blocks[:, 512:1024], block4.mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(blocks[:, 1024:1536], block4.max(axis=(1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(blocks[:, 1536:], open_engine(replace(spec, pooling="avgmax"))(images),
                               rtol=1e-5, atol=1e-5)
    if engine_installed():
        openvino = open_engine(replace(spec, engine="openvino"))(images)
        np.testing.assert_allclose(openvino, blocks, rtol=1e-3, atol=1e-3)


def test_a_blocks_store_records_its_groups_in_the_manifest_and_the_key(cli, split_folder):
    assert cli(*extract_args(split_folder, cli.cache, "--pooling", "avg")).exit_code == 0
    avg = load_store("latest", cache=cli.cache)
    result = cli(*extract_args(split_folder, cli.cache, "--pooling", "blocks"))
    assert result.exit_code == 0, result.output
    train = load_store("latest", cache=cli.cache)
    assert avg.column_groups is None  # one implicit group, as every store before them
    assert train.column_groups == GROUPS and train.feature_shape == (2560,)
    store = FeatureStore(cli.cache / train.key)
    manifest = json.loads((store.folder / "manifest.json").read_text())
    assert manifest["column_groups"] == GROUPS and manifest_problem(manifest) is None
    edited = {**manifest, "column_groups": {**GROUPS, "block5_avg": [1536, 2047]}}  # the key hashes them
    assert "not to its key" in manifest_problem(edited)
    assert "column groups" in manifest_problem({**manifest, "column_groups": {"x": [0, 9999]}})
    # the same pass: block 5's average columns are the avg store's
    np.testing.assert_allclose(np.asarray(train.data)[:, 1536:2048], np.asarray(avg.data), rtol=1e-5, atol=1e-5)


def test_the_transformer_computes_blocks_and_names_their_columns(split_folder):
    paths = sorted(str(p) for p in split_folder.rglob("*.png"))[:3]
    transformer = VGG16Features(image_size=32, pooling="blocks", weights="none", precision="fp32").fit()
    assert transformer.transform(paths).shape == (3, 2560) and transformer.column_groups_ == GROUPS


@pytest.mark.skipif(not engine_installed(), reason="int8 needs OpenVINO and NNCF")
def test_int8_is_quantized_with_every_blocks_output_and_its_drift_guard_checks_every_group(cli, split_folder):
    int8 = ("--precision", "int8", "--calibration-images", "4")
    result = cli(*extract_args(split_folder, cli.cache, *int8, "--pooling", "blocks"))
    assert result.exit_code == 0, result.output
    blocks = FeatureStore(cli.cache / (cli.cache / "LATEST").read_text().strip())
    (provenance,) = list((cli.cache / "int8-models").glob("*/calibration.json"))
    (drift,) = json.loads(provenance.read_text())["drift"].values()
    assert drift["min_cosine_by_group"].keys() == GROUPS.keys()
    assert drift["min_cosine"] == min(drift["min_cosine_by_group"].values()) >= 0.99
    result = cli(*extract_args(split_folder, cli.cache, *int8, "--pooling", "avgmax"))  # the same model
    assert result.exit_code == 0 and "Calibrating" not in result.output
    avgmax = FeatureStore(cli.cache / (cli.cache / "LATEST").read_text().strip())
    assert avgmax.manifest["int8"]["identity"] == blocks.manifest["int8"]["identity"]
    np.testing.assert_allclose(blocks.split_arrays("train")["features"][:, 1536:],
                               avgmax.split_arrays("train")["features"], rtol=1e-5, atol=1e-5)
    # and the fp32 blocks are close to it in every group
    assert cli(*extract_args(split_folder, cli.cache, "--pooling", "blocks")).exit_code == 0
    fp32 = load_store("latest", cache=cli.cache).data
    quantized = blocks.split_arrays("train")["features"]
    for start, stop in GROUPS.values():
        a, b = np.asarray(fp32)[:, start:stop], quantized[:, start:stop]
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosine.min() > 0.98
