"""The manifest's layout is one typed definition: what a new store records and what every read checks."""

from typing import get_type_hints

from features import BackboneSpec, ExtractConfig, resolve_weights, scan_dataset
from features.manifest import FIELDS, Manifest, manifest_key, manifest_problem, new_manifest, store_key
from pipeline.stores import recorded_weights


def test_a_new_manifest_has_every_field_of_the_type_and_hashes_to_its_key(split_folder):
    dataset = scan_dataset(split_folder)
    config = ExtractConfig(BackboneSpec(resolve_weights("none"), image_size=32, pooling="avgmax"))
    key = store_key(dataset, config)
    manifest = new_manifest(dataset, config, key)
    hints = get_type_hints(Manifest)
    assert manifest.keys() == hints.keys() - {"int8", "column_groups"}  # only for int8 and blocks stores
    assert all(isinstance(manifest[name], kind) for name, kind in hints.items() if name in manifest)
    assert manifest["feature_shape"] == [1024] and manifest["config"]["pooling"] == "avgmax"
    assert manifest_key(manifest) == key and manifest_problem(manifest) is None


def test_every_read_checks_the_required_fields_of_the_type(split_folder):
    assert set(FIELDS) == Manifest.__required_keys__ >= {"key", "config", "sources", "shards"}
    dataset = scan_dataset(split_folder)
    config = ExtractConfig(BackboneSpec(resolve_weights("none"), image_size=32))
    manifest = new_manifest(dataset, config, store_key(dataset, config))
    for field, kind in FIELDS.items():
        broken = {**manifest, field: None}
        assert manifest_problem(broken) == f"its {field!r} field is missing or not a JSON {kind.__name__}"


def test_a_weights_file_given_by_a_relative_path_is_found_again_from_another_folder(tmp_path, monkeypatch):
    """The manifest records the weights file's absolute path: `predict` run from elsewhere finds it."""
    weights_file = tmp_path / "weights" / "vgg16_notop.weights.h5"
    weights_file.parent.mkdir()
    weights_file.write_bytes(b"the bytes whose sha256 identifies these weights")
    monkeypatch.chdir(tmp_path)
    recorded = resolve_weights("weights/vgg16_notop.weights.h5")
    assert recorded.path == str(weights_file)
    monkeypatch.chdir(weights_file.parent)
    found = recorded_weights({"identity": recorded.identity, "path": recorded.path})
    assert found.path == str(weights_file) and found.identity == recorded.identity
