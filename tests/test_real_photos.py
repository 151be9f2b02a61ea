"""With the real ImageNet weights: every head separates cats from dogs on real photos."""

import json

import numpy as np
import pytest

from tests.conftest import CATS_AND_DOGS, REAL_WEIGHTS, make_cli

pytestmark = pytest.mark.skipif(
    not (REAL_WEIGHTS.is_file() and CATS_AND_DOGS.is_dir()),
    reason=f"needs the real VGG16 weights at {REAL_WEIGHTS} and photos at {CATS_AND_DOGS}",
)

SIZE = 150
CHECKED = 32  # validation photos of each class whose features are compared between precisions


def link_photos(target, split, per_class):
    for animal in ("cats", "dogs"):
        folder = target / split / animal
        folder.mkdir(parents=True)
        for source in sorted((CATS_AND_DOGS / split / animal).iterdir())[:per_class]:
            (folder / source.name).symlink_to(source)


def checked_photos(animal):
    return sorted((CATS_AND_DOGS / "validation" / animal).iterdir())[:CHECKED]


def pixels_of(photos):
    from features import load_pixels
    return np.stack([load_pixels(p, SIZE) for p in photos]).astype("float32")


def cosines(a, b):
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """100 training and 100 validation photos of each class, extracted once at the default
    precision (int8 where the CPU has VNNI or AMX and OpenVINO is installed); shared below."""
    folder = tmp_path_factory.mktemp("real")
    cli = make_cli(folder)
    data = folder / "cats_and_dogs"
    link_photos(data, "train", 100)
    link_photos(data, "validation", 100)
    result = cli("features", "--data", data, "--weights", str(REAL_WEIGHTS), "--image-size", str(SIZE),
                 "--cache", cli.cache)
    assert result.exit_code == 0, result.output
    cli.data = data
    return cli


@pytest.fixture(scope="module")
def fp32_features():
    """fp32 Keras features of the checked validation photos, by class."""
    from features import BackboneSpec, open_engine, resolve_weights

    engine = open_engine(BackboneSpec(resolve_weights(str(REAL_WEIGHTS)), image_size=SIZE, precision="fp32"))
    return {animal: engine(pixels_of(checked_photos(animal))) for animal in ("cats", "dogs")}


def test_each_head_reaches_90_percent_on_real_photos(extracted):
    """Each head on its own (the ensemble, a vote of these, is left out: its refits per fold cost
    as much again; tests/test_ensemble.py tests its choice)."""
    cli = extracted
    result = cli("compare", "--heads", "dense,logreg,svm", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 0, result.output
    (board,) = list(cli.runs.glob("*/leaderboard.json"))
    rows = json.loads(board.read_text())["rows"]
    accuracies = {row["head"]: row["accuracy"] for row in rows}
    assert {"dense", "logreg", "svm"} <= accuracies.keys() and min(accuracies.values()) >= 0.90, accuracies


def test_bf16_features_drift_little_from_fp32_with_real_weights(fp32_features):
    import keras
    from features import BackboneSpec, open_engine, resolve_weights

    spec = BackboneSpec(resolve_weights(str(REAL_WEIGHTS)), image_size=SIZE, precision="bf16")
    bf16 = open_engine(spec)(pixels_of(checked_photos("dogs")))
    cosine = cosines(fp32_features["dogs"], bf16)
    assert cosine.min() >= 0.999, cosine.min()
    assert keras.config.dtype_policy().name == "float32"


def test_int8_features_drift_little_from_fp32_with_real_weights(extracted, fp32_features):
    """The accuracy guard's drift check on an int8 store as `features` makes one: calibrated on
    DEFAULT_CALIBRATION_IMAGES training photos (no pooling in the model, pooled on the engine's
    output); the features it stored for 32 validation photos of each class against fp32 ones."""
    from features import FeatureStore
    from features.spec import DEFAULT_CALIBRATION_IMAGES, engine_installed

    if not engine_installed():
        pytest.skip("the fast extra (openvino, nncf) is not installed")
    cli = extracted
    stores = [FeatureStore(p.parent) for p in cli.cache.glob("*/manifest.json")]
    if not any(s.manifest["config"]["precision"] == "int8" for s in stores):  # auto chose bf16 or fp32 here
        result = cli("features", "--data", cli.data, "--weights", str(REAL_WEIGHTS), "--image-size", str(SIZE),
                     "--precision", "int8", "--cache", cli.cache)
        assert result.exit_code == 0, result.output
        stores = [FeatureStore(p.parent) for p in cli.cache.glob("*/manifest.json")]
    (int8,) = [s for s in stores if s.manifest["config"]["precision"] == "int8"]
    assert int8.manifest["config"]["engine"] == "openvino"
    assert len(int8.manifest["int8"]["calibration"]["sources"]) == DEFAULT_CALIBRATION_IMAGES
    rows = int8.split_arrays("validation")
    stored = dict(zip(int8.source_paths(rows["sources"]), rows["features"]))
    for animal in ("cats", "dogs"):
        a = fp32_features[animal]
        b = np.stack([stored[f"validation/{animal}/{p.name}"] for p in checked_photos(animal)])
        cosine = cosines(a, b)
        assert cosine.min() >= 0.99, (animal, cosine.min())
