"""Integrity: verify, damaged shards, disk errors, stale data, and alignment invariants."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import BackboneSpec, ExtractConfig, FeatureError, FeatureStore, StoreWriter, resolve_weights, scan_dataset
from features.extract import LocalExecutor, extract
from features.store import TEMPORARY_MARK
from features.verify import verify_store
from features.manifest import new_manifest, store_key
from tests.conftest import extract_args, write_images


def extracted(cli, data, *extra):
    result = cli(*extract_args(data, cli.cache, *extra))
    assert result.exit_code == 0, result.output
    return FeatureStore(next(p for p in cli.cache.iterdir() if p.is_dir()))


def test_verify_passes_a_sound_store_and_names_a_damaged_shard(cli, split_folder):
    store = extracted(cli, split_folder, "--shard-size", "6")
    result = cli("verify", "--cache", cli.cache)
    assert result.exit_code == 0 and f"OK: store {store.key}" in result.output
    shard = store.folder / "train" / "pass-0" / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = cli("verify", "--cache", cli.cache)
    assert result.exit_code == 1
    assert "train/pass-0/shard-00001.npy: sha256 differs" in result.output


def test_heads_refuse_a_truncated_or_missing_shard(cli, split_folder):
    store = extracted(cli, split_folder, "--shard-size", "6")
    shard = store.folder / "train" / "pass-0" / "shard-00000.npy"
    shard.write_bytes(shard.read_bytes()[:-100])
    result = cli("head", "--head", "logreg", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 1 and "shard-00000.npy" in result.output and "Traceback" not in result.output
    shard.unlink()
    result = cli("head", "--head", "logreg", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 1 and "missing or damaged" in result.output


def test_relabelled_rows_are_caught_by_verify(cli, split_folder):
    store = extracted(cli, split_folder)
    labels_path = store.folder / "train" / "pass-0" / "shard-00000.labels.npy"
    labels = np.load(labels_path)
    np.save(labels_path, 1 - labels)
    entry = store.manifest["shards"][0]
    import hashlib
    entry["sha256"]["labels"] = hashlib.sha256(labels_path.read_bytes()).hexdigest()
    problems = verify_store(store.folder, store.manifest)
    assert any("differs from its source file's class" in p for p in problems)


def test_disk_full_mid_shard_is_a_clear_error_and_nothing_half_written(split_folder, tmp_path):
    dataset = scan_dataset(split_folder)
    config = ExtractConfig(BackboneSpec(weights=resolve_weights("none"), image_size=32), shard_size=6)
    key = store_key(dataset, config)
    writer = StoreWriter.open(tmp_path / key, new_manifest(dataset, config, key))
    blocked = tmp_path / key / "train" / "pass-0" / f".shard-00001.npy{TEMPORARY_MARK}{os.getpid()}"
    blocked.parent.mkdir(parents=True)
    blocked.symlink_to("/dev/full")  # the temporary file of shard 1 lands on a full device
    with pytest.raises(FeatureError, match="No space left on device"):
        extract(dataset, config, writer)
    assert not blocked.exists() and not blocked.is_symlink()
    manifest = json.loads((tmp_path / key / "manifest.json").read_text())
    assert [e["name"] for e in manifest["shards"]] == ["train/pass-0/shard-00000"]
    assert not manifest["complete"]
    assert not (tmp_path / key / "train" / "pass-0" / "shard-00001.npy").exists()


def test_unwritable_cache_is_a_clear_error(cli, split_folder, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache should go")
    result = cli(*extract_args(split_folder, blocker))
    assert result.exit_code == 1 and "Cannot create the store folder" in result.output
    assert "--cache" in result.output and "Traceback" not in result.output


def test_a_store_of_class_folders_of_split_folders_is_not_taken_for_stale(cli, tmp_path):
    data = tmp_path / "data"
    for offset, name in enumerate(("cats", "dogs")):
        write_images(data / name, {"train": 8, "val": 3}, label_offset=2 * offset)
    store = extracted(cli, data)
    head = ("head", "--head", "logreg", "--store", store.key, "--cache", cli.cache, "--runs", cli.runs)
    result = cli(*head)
    assert result.exit_code == 0 and "stale" not in result.output, result.output
    write_images(data / "cats" / "train", {"more": 1}, start=900)
    assert "1 added" in cli(*head).output


def test_changed_data_is_reported_and_old_store_warned_stale(cli, split_folder):
    old = extracted(cli, split_folder)
    write_images(split_folder / "train", {"cats": 1}, start=900)
    (split_folder / "train" / "dogs" / "img_001.png").unlink()
    result = cli("head", "--head", "logreg", "--store", old.key, "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 0
    assert f"store {old.key} is stale" in result.output and "1 added, 1 removed" in result.output
    # the command that refreshes it names the folders and the settings that made it (32 px, random weights)
    refresh = f"make features DATA={split_folder} WEIGHTS=none IMAGE_SIZE=32 CACHE={cli.cache}"
    assert refresh in " ".join(result.output.split())
    result = cli(*extract_args(split_folder, cli.cache))
    assert result.exit_code == 0
    assert f"changed since store {old.key} (1 added, 1 removed)" in result.output


class Interrupted(Exception):
    pass


# Small trees (each example extracts its store about twice, a shard at a time) that still give
# one or several shards per split and pass, a short last shard, and kills anywhere in the run.
folder_trees = st.fixed_dictionaries({
    "classes": st.lists(st.integers(1, 4), min_size=2, max_size=4),
    "layout": st.sampled_from(["hashed", "splits"]),
    "passes": st.integers(0, 2),
    "shard_size": st.integers(1, 4),
    "kill_after": st.integers(1, 30),
})


SPEC = BackboneSpec(weights=resolve_weights("none"), image_size=32, batch_size=4)


@pytest.fixture(scope="module")
def executor():
    """One engine for every extraction below (what a LocalExecutor builds for each store when
    given none); that a resumed run rebuilds the very same engine is tests/test_crash_safety.py's."""
    from features import open_engine
    return LocalExecutor(open_engine(SPEC))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=folder_trees)
def test_store_invariants_and_resume_over_random_trees(tmp_path_factory, executor, tree):
    root = tmp_path_factory.mktemp("tree")
    counts = {f"class_{i}": n for i, n in enumerate(tree["classes"])}
    if tree["layout"] == "splits":
        write_images(root / "train", counts)
        write_images(root / "validation", {name: 1 for name in counts}, start=200)
    else:
        write_images(root, {name: n + 3 for name, n in counts.items()})
    try:
        dataset = scan_dataset(root, val_fraction=0.4)
    except FeatureError:  # a hashed split may leave no validation image: correctly refused
        return
    config = ExtractConfig(SPEC, passes=tree["passes"], shard_size=tree["shard_size"])
    key = store_key(dataset, config)
    header = new_manifest(dataset, config, key)

    whole = StoreWriter.open(root.parent / f"{root.name}-whole" / key, header)
    extract(dataset, config, whole, executor=executor)
    assert verify_store(whole.folder, whole.manifest) == []

    broken = StoreWriter.open(root.parent / f"{root.name}-broken" / key, header)
    seen = []

    def stop_after_some(n):
        seen.append(n)
        if sum(seen) >= tree["kill_after"]:
            raise Interrupted

    try:
        extract(dataset, config, broken, on_images=stop_after_some, executor=executor)
    except Interrupted:
        pass
    resumed = StoreWriter.open(broken.folder, header)
    extract(dataset, config, resumed, executor=executor)
    assert verify_store(resumed.folder, resumed.manifest) == []
    assert resumed.manifest == whole.manifest
    for path in whole.folder.rglob("*.npy"):
        assert path.read_bytes() == (resumed.folder / path.relative_to(whole.folder)).read_bytes()
