"""The backbone spec: one checked, resolved definition of what shapes the features, the model
built from it, and the CLI vocabulary derived from it."""

from dataclasses import replace

import numpy as np
import pytest

from features import BackboneSpec, FeatureError, FeatureStore, open_engine, resolve_weights
from features.backbone import build_backbone
from features.spec import (DEFAULT_CALIBRATION_IMAGES, RECORDED_CALIBRATION_IMAGES, choose_engine, cpu_flags,
                           engine_installed)
from tests.conftest import extract_args

RANDOM = resolve_weights("none")


@pytest.mark.parametrize("settings, message", [
    ({"image_size": 16}, "`image_size` must be an int from 32 to 1024. Received: 16"),
    ({"image_size": 224.0}, "`image_size` must be an int"),
    ({"pooling": "mean"}, "`pooling` must be one of avg, max, avgmax, none, block4_pool, blocks, bilinear. Received: 'mean'"),
    ({"views": 3}, "`views` must be 1 or 2. Received: 3"),
    ({"precision": "fp16"}, "`precision` must be one of auto, fp32, bf16, int8"),
    ({"precision": "auto"}, "build it with BackboneSpec.resolve"),
    ({"precision": "int8", "engine": "keras"}, "int8 runs on the openvino engine only"),
    ({"batch_size": 0}, "`batch_size` must be a positive int"),
])
def test_a_bad_setting_is_refused_naming_the_parameter(settings, message):
    with pytest.raises(FeatureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BackboneSpec(RANDOM, **settings)


def test_resolve_chooses_precision_and_engine_once_and_keeps_the_recorded_calibration_count():
    spec = BackboneSpec.resolve(weights=RANDOM, image_size=64)
    assert spec.precision in ("fp32", "bf16", "int8") and spec.reason
    assert spec.engine == choose_engine(spec.precision, cpu_flags(), engine_installed())
    expected = DEFAULT_CALIBRATION_IMAGES if spec.precision == "int8" else RECORDED_CALIBRATION_IMAGES
    assert spec.calibration_images == expected
    asked = BackboneSpec.resolve(precision="fp32", engine="keras", calibration_images=12, weights=RANDOM)
    assert (asked.precision, asked.engine, asked.reason) == ("fp32", "keras", None)
    assert asked.calibration_images == RECORDED_CALIBRATION_IMAGES  # fp32 keys never change with it
    assert BackboneSpec.from_settings(asked.settings(), RANDOM) == asked


@pytest.mark.parametrize("pooling, shape", [("avg", (512,)), ("max", (512,)), ("avgmax", (1024,)),
                                            ("none", (2, 2, 512))])
def test_feature_shape_follows_the_pooling(pooling, shape):
    spec = BackboneSpec(RANDOM, image_size=64, pooling=pooling)
    assert spec.feature_shape == shape
    images = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    assert open_engine(spec)(images).shape == (3, *shape)


def test_the_backbone_takes_raw_pixels_and_preprocesses_exactly_as_keras_does():
    """Preprocessing inside the model must give the very numbers of preprocess_input then the
    base: stores made before it moved keep their keys and bytes."""
    from keras.applications import vgg16

    spec = BackboneSpec(RANDOM, image_size=64, pooling="none")
    model = build_backbone(spec)
    images = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 3)).astype(np.float32)
    expected = model.get_layer("vgg16")(vgg16.preprocess_input(images.copy())).numpy()
    np.testing.assert_array_equal(model(images).numpy(), expected)


def test_avgmax_is_the_average_then_the_max_of_the_maps_on_every_engine():
    spec = BackboneSpec(RANDOM, image_size=64, pooling="none")
    images = np.random.default_rng(2).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    maps = open_engine(spec)(images)
    both = open_engine(replace(spec, pooling="avgmax"))(images)
    np.testing.assert_allclose(both, np.concatenate([maps.mean((1, 2)), maps.max((1, 2))], 1), rtol=1e-5, atol=1e-5)
    if engine_installed():
        openvino = open_engine(replace(spec, pooling="avgmax", engine="openvino"))(images)
        np.testing.assert_allclose(openvino, both, rtol=1e-3, atol=1e-3)


def test_blocks_is_the_cli_default_and_keyed_apart_from_avg(cli, split_folder):
    assert cli(*extract_args(split_folder, cli.cache, "--pooling", "avg")).exit_code == 0
    result = cli(*extract_args(split_folder, cli.cache))
    assert result.exit_code == 0, result.output
    stores = {FeatureStore(p.parent).manifest["config"]["pooling"]: FeatureStore(p.parent)
              for p in cli.cache.glob("*/manifest.json")}
    assert stores.keys() == {"avg", "blocks"}
    assert stores["blocks"].manifest["feature_shape"] == [2560]
    avg, blocks = (stores[p].split_arrays("train")["features"] for p in ("avg", "blocks"))
    block5_avg = stores["blocks"].column_groups["block5_avg"]
    np.testing.assert_allclose(blocks[:, slice(*block5_avg)], avg, rtol=1e-6)
    refused = cli(*extract_args(split_folder, cli.cache, "--pooling", "mean"))
    assert refused.exit_code == 2 and "avgmax" in refused.output


def test_library_messages_become_cli_options_only_where_an_option_exists():
    from pipeline.cli import as_options

    assert as_options("`image_size` must be at least 32; rerun `features`") == \
        "--image-size must be at least 32; rerun `features`"
    assert as_options("raise `max_bad`, or pass `layout` flat") == "raise --max-bad, or pass --layout flat"
