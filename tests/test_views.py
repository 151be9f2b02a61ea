"""--views 2: each image and its mirror, features averaged; in the key, in predict and in export."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from features import BackboneSpec, ExtractConfig, FeatureError, FeatureStore, load_pixels, resolve_weights, scan_dataset
from features.manifest import content_key, store_key
from tests.conftest import extract_args, pattern_image


def write_pngs(root: Path, mirrored: bool = False) -> Path:
    """root/{train,validation}/{a,b}/*.png at 32 px (no resize), optionally mirrored left-right."""
    for split, numbers in (("train", range(8)), ("validation", range(100, 103))):
        for label, name in enumerate(("a", "b")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for number in numbers:
                image = pattern_image(label, number, size=32)
                if mirrored:
                    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                image.save(root / split / name / f"img_{number:03d}.png")
    return root


def stored(cache: Path, split: str = "train") -> tuple[np.ndarray, dict]:
    store = FeatureStore(cache / (cache / "LATEST").read_text().strip())
    return store.split_arrays(split, passes=False)["features"], store.manifest


def test_views_change_the_key_but_views_1_keeps_the_old_one(tmp_path):
    dataset, weights = scan_dataset(write_pngs(tmp_path / "photos")), resolve_weights("none")
    one, two = (ExtractConfig(BackboneSpec(weights, pooling="avgmax", views=views)) for views in (1, 2))
    old_settings = {k: v for k, v in one.to_dict().items() if k != "views"}  # a config before views
    sources = [vars(s) for s in dataset.sources]
    assert store_key(dataset, one) == content_key(old_settings, "random", dataset.class_names, sources)
    assert store_key(dataset, two) != store_key(dataset, one)
    with pytest.raises(FeatureError, match="`views` must be 1 or 2. Received: 3"):
        BackboneSpec(weights, views=3)


def test_two_views_average_the_image_and_its_mirror(cli, tmp_path):
    photos, mirrored = write_pngs(tmp_path / "photos"), write_pngs(tmp_path / "mirrored", mirrored=True)
    features = {}
    for name, data in (("photos", photos), ("mirrored", mirrored)):
        for views in (1, 2):
            cache = tmp_path / f"cache-{name}-{views}"
            result = cli(*extract_args(data, cache, "--views", str(views)))
            assert result.exit_code == 0, result.output
            features[name, views], manifest = stored(cache)
            assert manifest["config"]["views"] == views and manifest["feature_shape"] == [2560]
    assert features["photos", 2].shape == features["photos", 1].shape == (16, 2560)
    np.testing.assert_allclose(features["photos", 2], (features["photos", 1] + features["mirrored", 1]) / 2,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features["photos", 2], features["mirrored", 2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(features["photos", 1], features["mirrored", 1], rtol=1e-3)


def test_predict_and_the_keras_export_apply_the_stores_views(cli, tmp_path):
    photos = write_pngs(tmp_path / "photos")
    common = ["--cache", cli.cache, "--runs", cli.runs]
    assert cli(*extract_args(photos, cli.cache, "--views", "2")).exit_code == 0
    # the .keras export below takes a logreg without the signed square root (no Keras layer for it);
    # fitted on training alone, so that it predicts validation as its saved validation predictions say
    assert cli("head", "--head", "logreg", "--no-search", "--param", "normalize=none", "--final-fit", "train",
               *common).exit_code == 0
    images = sorted((photos / "validation").rglob("*.png"))
    predicted = json.loads(cli("predict", *images, "--head", "logreg", "--format", "json", *common).stdout)
    saved = np.load(next(cli.runs.glob("*/logreg/validation_predictions.npz")))
    _, manifest = stored(cli.cache)
    by_path = {manifest["sources"][s]["path"]: row for s, row in zip(saved["sources"], saved["proba"])}
    for image, record in zip(images, predicted):  # predict computes the features the store holds
        expected = by_path[image.relative_to(photos).as_posix()]
        assert record["probability"] == pytest.approx(expected.max(), abs=1e-5)
    out = tmp_path / "export" / "views.keras"
    assert cli("export", "--head", "logreg", "--out", out, *common).exit_code == 0
    model = keras.saving.load_model(out)
    assert "horizontal_flip" in [layer.name for layer in model.layers]
    pixels = np.stack([load_pixels(p, 32) for p in images]).astype("float32")
    np.testing.assert_allclose(model.predict(pixels, verbose=0).max(axis=1),
                               [p["probability"] for p in predicted], atol=1e-4)
