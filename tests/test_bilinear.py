"""`bilinear` pooling: blocks' columns and a compact bilinear group of block 5, the same on every
engine (int8 included), estimating the photos' channel co-occurrence products, recorded as a column
group that logreg and the SVM may choose by their search."""

import json
from dataclasses import replace

import numpy as np
import pytest

from features import FeatureStore, load_store
from features.bilinear import compact_bilinear
from features.engines import open_engine
from features.spec import BILINEAR_COLUMNS, BackboneSpec, engine_installed
from features.weights import resolve_weights
from pipeline.runs import BILINEAR_CHOICE, COLUMN_CHOICES
from tests.conftest import extract_args

RANDOM = resolve_weights("none")


def test_its_columns_estimate_the_dot_products_of_the_channel_co_occurrences():
    maps = np.random.default_rng(0).gamma(0.5, size=(4, 3, 3, 512)).astype(np.float32)  # ReLU-like, sparse
    positions = maps.reshape(4, -1, 512)
    co_occurrence = np.einsum("npc,npd->ncd", positions, positions) / positions.shape[1]
    exact = np.einsum("icd,jcd->ij", co_occurrence, co_occurrence)
    columns = compact_bilinear(maps)
    assert columns.shape == (4, BILINEAR_COLUMNS) and columns.dtype == np.float32
    np.testing.assert_allclose(columns @ columns.T, exact, rtol=0.05)


def test_bilinear_is_blocks_and_block5s_compact_bilinear_on_every_engine():
    spec = BackboneSpec(RANDOM, image_size=64, pooling="bilinear")
    assert spec.feature_shape == (2560 + BILINEAR_COLUMNS,)
    assert spec.column_groups == {**BackboneSpec(RANDOM, pooling="blocks").column_groups,
                                  "block5_bilinear": [2560, 2560 + BILINEAR_COLUMNS]}
    images = np.random.default_rng(3).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    keras_features = open_engine(spec)(images)  # in the Keras graph, as exports run it
    np.testing.assert_allclose(keras_features[:, :2560], open_engine(replace(spec, pooling="blocks"))(images),
                               rtol=1e-5, atol=1e-5)
    block5_maps = open_engine(replace(spec, pooling="none"))(images)
    np.testing.assert_allclose(keras_features[:, 2560:], compact_bilinear(block5_maps), rtol=1e-4, atol=1e-4)
    if engine_installed():
        openvino = open_engine(replace(spec, engine="openvino"))(images)
        np.testing.assert_allclose(openvino, keras_features, rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(not engine_installed(), reason="int8 needs OpenVINO and NNCF")
def test_an_int8_bilinear_store_shares_the_calibrated_model_and_stays_close_to_fp32(cli, split_folder):
    int8 = ("--precision", "int8", "--calibration-images", "4")
    assert cli(*extract_args(split_folder, cli.cache, *int8, "--pooling", "blocks")).exit_code == 0
    result = cli(*extract_args(split_folder, cli.cache, *int8, "--pooling", "bilinear"))
    assert result.exit_code == 0 and "Calibrating" not in result.output  # blocks' model serves it
    quantized = load_store("latest", cache=cli.cache).data
    assert cli(*extract_args(split_folder, cli.cache, "--pooling", "bilinear")).exit_code == 0
    fp32 = load_store("latest", cache=cli.cache).data
    a, b = (np.asarray(features)[:, 2560:] for features in (fp32, quantized))
    assert (np.abs(a).sum(axis=1) > 0).all()
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.95


def test_a_bilinear_store_names_the_group_and_logreg_may_choose_it(cli, split_folder):
    result = cli(*extract_args(split_folder, cli.cache, "--pooling", "bilinear"))
    assert result.exit_code == 0, result.output
    store = load_store("latest", cache=cli.cache)
    assert store.column_groups["block5_bilinear"] == [2560, 2560 + BILINEAR_COLUMNS]
    manifest = json.loads((FeatureStore(cli.cache / store.key).folder / "manifest.json").read_text())
    assert manifest["column_groups"] == store.column_groups
    result = cli("head", "--head", "logreg", "--cache", str(cli.cache), "--runs", str(cli.runs))
    assert result.exit_code == 0, result.output
    run = json.loads((cli.runs / store.key / "logreg" / "run.json").read_text())
    assert run["params"]["search_space"]["columns"] == [*COLUMN_CHOICES, BILINEAR_CHOICE]
    assert run["details"]["columns"] in [*COLUMN_CHOICES, BILINEAR_CHOICE]
