"""With the real ImageNet weights: every head separates cats from dogs on real photos."""

import json

import numpy as np
import pytest

from tests.conftest import CATS_AND_DOGS, REAL_WEIGHTS

pytestmark = pytest.mark.skipif(
    not (REAL_WEIGHTS.is_file() and CATS_AND_DOGS.is_dir()),
    reason=f"needs the real VGG16 weights at {REAL_WEIGHTS} and photos at {CATS_AND_DOGS}",
)


def link_photos(target, split, per_class):
    for animal in ("cats", "dogs"):
        folder = target / split / animal
        folder.mkdir(parents=True)
        for source in sorted((CATS_AND_DOGS / split / animal).iterdir())[:per_class]:
            (folder / source.name).symlink_to(source)


def test_each_head_reaches_90_percent_on_real_photos(cli, tmp_path):
    data = tmp_path / "cats_and_dogs"
    link_photos(data, "train", 100)
    link_photos(data, "validation", 100)
    result = cli("features", "--data", data, "--weights", str(REAL_WEIGHTS), "--image-size", "150",
                 "--cache", cli.cache)
    assert result.exit_code == 0, result.output
    result = cli("compare", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 0, result.output
    (board,) = list(cli.runs.glob("*/leaderboard.json"))
    rows = json.loads(board.read_text())["rows"]
    accuracies = {row["head"]: row["accuracy"] for row in rows}
    assert {"dense", "logreg", "svm"} <= accuracies.keys() and min(accuracies.values()) >= 0.90, accuracies


def test_bf16_features_drift_little_from_fp32_with_real_weights():
    import keras
    from features import BackboneSpec, load_pixels, open_engine, resolve_weights

    photos = sorted((CATS_AND_DOGS / "validation" / "dogs").iterdir())[:32]
    pixels = np.stack([load_pixels(p, 150) for p in photos]).astype("float32")
    weights = resolve_weights(str(REAL_WEIGHTS))
    features = {precision: open_engine(BackboneSpec(weights, image_size=150, precision=precision))(pixels)
                for precision in ("fp32", "bf16")}
    a, b = features["fp32"], features["bf16"]
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.999, cosine.min()
    assert keras.config.dtype_policy().name == "float32"


def test_int8_features_drift_little_from_fp32_with_real_weights():
    """The accuracy guard's drift check: calibrated as a store is (DEFAULT_CALIBRATION_IMAGES
    training photos, no pooling in the model, pooled on the engine's output), checked on 32
    validation photos of each class."""
    from features import BackboneSpec, load_pixels, open_engine, resolve_weights, scan_dataset
    from features.calibration import CALIBRATION_BATCH, calibration_batches, calibration_sources, quantize_int8
    from features.spec import DEFAULT_CALIBRATION_IMAGES, engine_installed

    if not engine_installed():
        pytest.skip("the fast extra (openvino, nncf) is not installed")
    weights = resolve_weights(str(REAL_WEIGHTS))
    dataset = scan_dataset(CATS_AND_DOGS)
    sources = calibration_sources(dataset, DEFAULT_CALIBRATION_IMAGES)
    assert len(sources) == DEFAULT_CALIBRATION_IMAGES
    batches = calibration_batches(dataset, sources, 150, CALIBRATION_BATCH)
    from features.engines.openvino_engine import OpenVinoEngine

    spec = BackboneSpec(weights, image_size=150)
    int8 = OpenVinoEngine(quantize_int8(spec, batches), BackboneSpec(weights, image_size=150, precision="int8",
                                                                    engine="openvino"), pool_maps=True)
    photos = [p for animal in ("cats", "dogs") for p in sorted((CATS_AND_DOGS / "validation" / animal).iterdir())[:32]]
    pixels = np.stack([load_pixels(p, 150) for p in photos]).astype("float32")
    a, b = open_engine(spec)(pixels), int8(pixels)
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99, cosine.min()
