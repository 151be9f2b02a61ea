"""Stage one end to end on real files: shapes, traceability, passes, caching, preprocessing."""

import json

import keras
import numpy as np
import pytest
from keras.applications import vgg16

from features import FeatureStore, load_pixels, scan_dataset
from tests.conftest import extract_args


def only_store(cache):
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    return FeatureStore(folder)


@pytest.mark.parametrize("pooling, dtype, shape", [
    ("avg", "float32", (512,)),
    ("max", "float16", (512,)),
    ("none", "float32", (2, 2, 512)),
])
def test_shapes_and_dtypes_per_pooling(cli, split_folder, pooling, dtype, shape):
    result = cli(*extract_args(split_folder, cli.cache, "--image-size", "64",
                               "--pooling", pooling, "--dtype", dtype))
    assert result.exit_code == 0, result.output
    store = only_store(cli.cache)
    shard = store.load_shard(store.manifest["shards"][0])
    assert shard["features"].shape[1:] == shape
    assert shard["features"].dtype == np.dtype(dtype)
    assert store.manifest["feature_shape"] == list(shape)


def test_every_row_traces_to_its_file_and_label(cli, flat_folder):
    assert cli(*extract_args(flat_folder, cli.cache, "--shard-size", "5")).exit_code == 0
    store = only_store(cli.cache)
    assert store.class_names == ["alpha", "beta", "gamma"]
    assert len(store.manifest["shards"]) > 2
    for split in ("train", "validation"):
        rows = store.split_arrays(split)
        for source, label in zip(rows["sources"], rows["labels"]):
            entry = store.manifest["sources"][source]
            assert entry["split"] == split
            assert entry["path"].split("/")[0] == store.class_names[label]
    total = sum(len(store.split_arrays(s)["labels"]) for s in ("train", "validation"))
    assert total == 36


def test_augmented_passes_only_touch_training_images(cli, split_folder):
    assert cli(*extract_args(split_folder, cli.cache, "--passes", "2", "--shard-size", "8")).exit_code == 0
    store = only_store(cli.cache)
    train, validation = store.split_arrays("train"), store.split_arrays("validation")
    assert len(train["labels"]) == 3 * 20 and len(validation["labels"]) == 8
    assert set(validation["passes"]) == {0}
    assert not set(validation["sources"]) & set(train["sources"])
    for pass_index in range(3):
        sources = train["sources"][train["passes"] == pass_index]
        assert sorted(sources) == sorted(set(sources)) and len(sources) == 20
    plain = train["features"][train["passes"] == 0]
    augmented = train["features"][train["passes"] == 1]
    assert not np.allclose(plain, augmented)


def test_augmentation_is_reproducible(cli, split_folder, tmp_path):
    for cache in ("a", "b"):
        assert cli(*extract_args(split_folder, tmp_path / cache, "--passes", "1")).exit_code == 0
    a, b = only_store(tmp_path / "a"), only_store(tmp_path / "b")
    assert a.key == b.key
    np.testing.assert_array_equal(a.split_arrays("train")["features"], b.split_arrays("train")["features"])


def test_same_inputs_twice_recompute_nothing(cli, split_folder):
    assert cli(*extract_args(split_folder, cli.cache)).exit_code == 0
    store = only_store(cli.cache)
    stamps = {p: p.stat().st_mtime_ns for p in store.folder.rglob("*.npy")}
    second = cli(*extract_args(split_folder, cli.cache))
    assert second.exit_code == 0
    assert "nothing to recompute" in second.output
    assert {p: p.stat().st_mtime_ns for p in store.folder.rglob("*.npy")} == stamps


def test_changed_inputs_make_a_new_store(cli, split_folder):
    assert cli(*extract_args(split_folder, cli.cache)).exit_code == 0
    assert cli(*extract_args(split_folder, cli.cache, "--image-size", "48")).exit_code == 0
    (split_folder / "train" / "cats" / "img_000.JPG").unlink()
    assert cli(*extract_args(split_folder, cli.cache, "--image-size", "48")).exit_code == 0
    keys = [p for p in cli.cache.iterdir() if p.is_dir()]
    assert len(keys) == 3


def test_fp32_features_equal_keras_predict_on_the_same_pixels(cli, split_folder):
    assert cli(*extract_args(split_folder, cli.cache, "--image-size", "48", "--precision", "fp32")).exit_code == 0
    store = only_store(cli.cache)
    rows = store.split_arrays("validation")
    pixels = np.stack([load_pixels(split_folder / path, 48) for path in store.source_paths(rows["sources"])])
    keras.utils.set_random_seed(0)  # the store's seed: the same random weights
    model = vgg16.VGG16(include_top=False, weights=None, input_shape=(48, 48, 3), pooling=None)
    maps = model.predict(vgg16.preprocess_input(pixels.astype("float32")), verbose=0)
    expected = np.concatenate([maps.mean(axis=(1, 2)), maps.max(axis=(1, 2))], axis=1)  # block 5's average, max
    block5 = slice(store.column_groups["block5_avg"][0], store.column_groups["block5_max"][1])
    np.testing.assert_allclose(rows["features"][:, block5], expected, rtol=1e-4, atol=1e-4)


def test_unreadable_image_is_skipped_listed_and_summarised(cli, flat_folder):
    (flat_folder / "beta" / "broken.jpg").write_bytes(b"this is not a jpeg")
    result = cli(*extract_args(flat_folder, cli.cache, "--max-bad", "0.05"))
    assert result.exit_code == 0, result.output
    assert "Skipped 1 unreadable file" in result.output and "beta/broken.jpg" in result.output
    store = only_store(cli.cache)
    assert [entry["path"] for entry in store.manifest["skipped"]] == ["beta/broken.jpg"]
    bad_index = [s["path"] for s in store.manifest["sources"]].index("beta/broken.jpg")
    every_source = np.concatenate([store.split_arrays(s)["sources"] for s in store.splits])
    assert bad_index not in every_source and len(every_source) == 36


def test_manifest_records_config_classes_files_and_shard_hashes(cli, split_folder):
    assert cli(*extract_args(split_folder, cli.cache, "--shard-size", "6")).exit_code == 0
    store = only_store(cli.cache)
    manifest = json.loads((store.folder / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["image_size"] == 32
    assert manifest["weights"]["identity"] == "random" and "random" in manifest["weights"]["warning"]
    assert len(manifest["sources"]) == len(scan_dataset(split_folder).sources)
    assert sum(shard["rows"] for shard in manifest["shards"]) == 28
    assert all(len(shard["sha256"]["features"]) == 64 for shard in manifest["shards"])
    assert (store.folder / "train" / "pass-0" / "shard-00000.npy").is_file()
    assert (store.folder / "train" / "pass-0" / "shard-00000.labels.npy").is_file()
    assert (store.folder / "train" / "pass-0" / "shard-00000.sources.npy").is_file()


def test_bf16_features_are_close_to_fp32_and_keyed_apart(cli, split_folder):
    assert cli(*extract_args(split_folder, cli.cache, "--image-size", "64", "--precision", "fp32")).exit_code == 0
    result = cli(*extract_args(split_folder, cli.cache, "--image-size", "64", "--precision", "bf16"))
    assert result.exit_code == 0, result.output
    stores = [FeatureStore(p) for p in cli.cache.iterdir() if p.is_dir()]
    by_precision = {s.manifest["config"]["precision"]: s for s in stores}
    assert set(by_precision) == {"fp32", "bf16"}
    fp32 = by_precision["fp32"].split_arrays("train")["features"]
    bf16 = by_precision["bf16"].split_arrays("train")["features"]
    assert bf16.dtype == np.float32 and not np.array_equal(fp32, bf16)
    cosine = (fp32 * bf16).sum(axis=1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.99
    assert keras.config.dtype_policy().name == "float32"  # the bf16 policy did not leak

    # predict and the head work on a bf16 store as on any other
    common = ("--store", by_precision["bf16"].key, "--cache", cli.cache, "--runs", cli.runs)
    assert cli("head", "--head", "logreg", "--no-search", *common).exit_code == 0
    image = split_folder / "train" / "cats" / "img_000.JPG"
    predicted = cli("predict", image, "--head", "logreg", "--format", "json", *common)
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout)[0]["class"] in ("cats", "dogs")


def test_auto_precision_follows_the_cpu_flags():
    from features.spec import native_precision, resolve_precision
    assert native_precision({"avx2", "avx512f", "avx512_bf16"}) == "bf16"
    assert native_precision({"amx_bf16", "amx_tile"}) == "bf16"
    assert native_precision({"avx2", "avx512f"}) == "fp32"
    assert resolve_precision("auto") in ("fp32", "bf16", "int8")
