"""The finetune head: VGG16's block 5 trained on a store's cached block4_pool maps."""

import json

import keras
import numpy as np
import pytest
from keras.applications import vgg16

from conftest import make_cli, shortened_defaults, write_split_folder
from features import BackboneSpec, FeatureError, FeatureStore, load_pixels
from heads import FinetuneHead, HeadError
from heads._finetune import BLOCK5

TRAIN_PER_CLASS, VALIDATION_PER_CLASS = 10, 4


def conv_pairs(model) -> dict[str, list[np.ndarray]]:
    """Every Conv2D's weights in ``model`` (nested models included), by layer name."""
    pairs = {}
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D) and layer.name.startswith("block"):
            pairs[layer.name] = layer.get_weights()
    return pairs


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A block4_pool store of two-class photos at 32 px, extracted with a (random) VGG16 weights
    file; the finetune head fitted on it with one fine-tuning epoch on every row; its export."""
    root = tmp_path_factory.mktemp("finetune")
    keras.utils.set_random_seed(5)
    base = vgg16.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = root / "vgg16.weights.h5"
    base.save_weights(weights)
    photos = write_split_folder(root / "photos", TRAIN_PER_CLASS, VALIDATION_PER_CLASS)
    cli = make_cli(root)
    common = ["--cache", cli.cache, "--runs", cli.runs]
    extracted = cli("features", "--data", photos, "--cache", cli.cache, "--weights", weights, "--image-size", "32",
                    "--pooling", "block4_pool", "--precision", "fp32")
    assert extracted.exit_code == 0, extracted.output
    fitted = cli("head", "--head", "finetune", "--param", "patience=0", "--param", "epochs=1",
                 "--param", "learning_rate=0.001", *common)
    assert fitted.exit_code == 0, fitted.output
    assert "then block 5 fine-tuned 1 epoch in" in fitted.output  # what it chose, in words
    out = root / "export" / "finetune.keras"
    exported = cli("export", "--head", "finetune", "--out", out, *common)
    assert exported.exit_code == 0, exported.output
    store = FeatureStore(cli.cache / (cli.cache / "LATEST").read_text().strip())
    return cli, photos, store, conv_pairs(base), out


def test_block4_pool_is_block_4s_maps_never_int8_nor_averaged_with_a_mirror(monkeypatch):
    assert BackboneSpec(pooling="block4_pool", image_size=224).feature_shape == (14, 14, 512)
    assert BackboneSpec(pooling="none", image_size=224).feature_shape == (7, 7, 512)
    with pytest.raises(FeatureError, match="block4_pool maps are extracted in fp32 or bf16"):
        BackboneSpec(pooling="block4_pool", precision="int8", engine="openvino")
    with pytest.raises(FeatureError, match="pass views 1"):
        BackboneSpec(pooling="block4_pool", views=2)
    monkeypatch.setattr("features.spec.engine_installed", lambda: True)
    for flags, expected in (({"avx512_vnni", "avx512_bf16"}, "bf16"), ({"avx512_vnni"}, "fp32")):
        monkeypatch.setattr("features.spec.cpu_flags", lambda: flags)
        assert BackboneSpec.resolve(pooling="avgmax").precision == "int8"  # what auto picks for pooled features
        spec = BackboneSpec.resolve(pooling="block4_pool")
        assert spec.precision == expected and "block4_pool" in spec.reason


def test_the_store_holds_block_4s_maps_in_float16(finetuned):
    _, _, store, _, _ = finetuned
    train = store.split_arrays("train")
    assert train["features"].shape == (2 * TRAIN_PER_CLASS, 2, 2, 512)
    assert store.manifest["config"]["pooling"] == "block4_pool" and store.manifest["config"]["dtype"] == "float16"
    assert {np.load(shard, mmap_mode="r").dtype for shard in store.folder.glob("train/*/shard-?????.npy")} == {np.dtype("float16")}


def test_finetune_trains_block5_from_the_weights_file_and_nothing_before_it(finetuned):
    cli, _, store, original, out = finetuned
    run = json.loads(next(cli.runs.glob("*/finetune/run.json")).read_text())
    assert run["details"]["epochs"] == 1 and run["details"]["rows_seen"] == 2 * TRAIN_PER_CLASS
    exported = conv_pairs(keras.saving.load_model(out))
    assert set(exported) == set(original)
    for name, pair in original.items():
        trained = name in BLOCK5
        for array, before in zip(exported[name], pair):
            assert np.array_equal(array, before) != trained, f"{name} {'not ' if trained else ''}trained"


def test_finetune_keeps_the_top_alone_when_fine_tuning_never_helps(finetuned, tmp_path, monkeypatch):
    _, _, store, original, _ = finetuned
    monkeypatch.setattr("heads._finetune.TOP_EPOCHS", 10)  # the top's length is not the point (80 epochs: 20 s)
    train = store.split_rows("train")
    weights = store.manifest["weights"]["path"]
    head = FinetuneHead(weights=weights, learning_rate=10.0, epochs=2, precision="fp32")
    head.fit(train["features"], train["labels"], groups=train["sources"])  # a step this large only hurts
    assert head.epochs_ == 0 and head.refitted_ and head.rows_seen_ == 2 * TRAIN_PER_CLASS
    kept = conv_pairs(head.model_)
    for name in BLOCK5:
        for array, before in zip(kept[name], original[name]):
            np.testing.assert_array_equal(array, before)
    proba = head.predict_proba(train["features"][:5])
    assert proba.shape == (5, 2)
    head.save(tmp_path / "finetune")
    np.testing.assert_array_equal(FinetuneHead.load(tmp_path / "finetune").predict_proba(train["features"][:5]), proba)


def test_the_export_predicts_what_predict_does(finetuned):
    cli, photos, _, _, out = finetuned
    images = sorted((photos / "validation").rglob("*.*"))
    predicted = json.loads(cli("predict", *images, "--head", "finetune", "--format", "json",
                               "--cache", cli.cache, "--runs", cli.runs).stdout)
    classes = json.loads(out.with_suffix(".classes.json").read_text())
    pixels = np.stack([load_pixels(p, 32) for p in images]).astype("float32")
    proba = keras.saving.load_model(out).predict(pixels, verbose=0)
    assert [classes[i] for i in proba.argmax(axis=1)] == [p["class"] for p in predicted]
    np.testing.assert_allclose(proba.max(axis=1), [p["probability"] for p in predicted], atol=1e-4)


def test_compare_fits_finetune_on_maps_and_each_head_refuses_the_other_features(finetuned, tmp_path):
    """Also: the same photos extracted with another pooling make another store. The head's defaults
    are shortened as the fixture's fit is (its length is not the point)."""
    cli, photos, store, _, _ = finetuned
    runs = tmp_path / "runs"
    with shortened_defaults(FinetuneHead, {"epochs": 1, "patience": 0}):
        compared = cli("compare", "--cache", cli.cache, "--runs", runs)
    assert compared.exit_code == 0, compared.output
    board = json.loads(next(runs.glob("*/leaderboard.json")).read_text())
    assert [row["head"] for row in board["rows"]] == ["finetune"]
    refused = cli("head", "--head", "logreg", "--cache", cli.cache, "--runs", runs)
    assert refused.exit_code == 1 and "holds block4_pool maps, which only the finetune head takes" in refused.output
    pooled = make_cli(tmp_path)
    assert pooled("features", "--data", photos, "--cache", pooled.cache, "--weights", store.manifest["weights"]["path"],
                  "--image-size", "32", "--precision", "fp32").exit_code == 0
    refused = pooled("head", "--head", "finetune", "--cache", pooled.cache, "--runs", pooled.runs)
    assert refused.exit_code == 1 and "--pooling block4_pool" in refused.output
    maps_key, pooled_key = ((c.cache / "LATEST").read_text().strip() for c in (cli, pooled))
    assert maps_key != pooled_key  # the same photos: the pooling is part of the store key


def test_finetune_refuses_pooled_features():
    with pytest.raises(HeadError, match="block4_pool maps"):
        FinetuneHead().fit(np.ones((8, 1024), np.float32), np.arange(8) % 2)


def test_the_top_divides_no_channel_by_a_near_zero_spread():
    """On few rows, a channel of block 5's features can be nearly constant; the top's standardisation
    divides it by at least a tenth of the median channel's spread, so a new image cannot turn it
    into z-scores in the thousands."""
    rng = np.random.default_rng(0)
    X = np.maximum(rng.normal(size=(6, 2, 2, 512)), 0).astype(np.float32)
    head = FinetuneHead(epochs=0, patience=0, precision="fp32").fit(X, np.repeat([0, 1], 3))
    top = head.model_.get_layer("top")
    (standardise,) = [layer for layer in top.layers if isinstance(layer, keras.layers.Normalization)]
    std = np.sqrt(np.asarray(standardise.variance)).ravel()
    from heads._finetune import _pooled
    pooled = _pooled(head.model_.get_layer("block5"), X, np.arange(len(X)))
    spread = pooled.std(axis=0)
    assert spread.min() < 0.01 * np.median(spread[spread > 0])  # near-constant channels occur
    assert std.min() >= 0.1 * np.median(spread[spread > 0]) * (1 - 1e-4)
