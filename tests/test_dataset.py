"""Folder scanning: classes, layouts, stable splits and the errors for bad folders."""

import pytest

from features import FeatureError, scan_dataset
from features.dataset import hashed_split
from tests.conftest import write_images


def test_class_order_is_sorted_folder_names(tmp_path):
    write_images(tmp_path, {"zebra": 3, "Apple": 3, "mango": 3})
    dataset = scan_dataset(tmp_path, val_fraction=0.5)
    assert dataset.class_names == ("Apple", "mango", "zebra")
    for source in dataset.sources:
        assert source.path.split("/")[0] == dataset.class_names[source.label]


def test_split_layout_is_kept(split_folder):
    dataset = scan_dataset(split_folder)
    assert dataset.layout == "splits"
    assert dataset.class_names == ("cats", "dogs")
    for source in dataset.sources:
        assert source.path.startswith(source.split + "/")
    assert len(dataset.indices("train")) == 20 and len(dataset.indices("validation")) == 8


def test_hashed_split_is_stable_when_photos_are_added(flat_folder):
    before = {s.path: s.split for s in scan_dataset(flat_folder).sources}
    write_images(flat_folder, {"alpha": 5, "beta": 5, "gamma": 5}, start=500)
    after = {s.path: s.split for s in scan_dataset(flat_folder).sources}
    assert all(after[path] == split for path, split in before.items())
    assert len(after) == len(before) + 15


def test_val_fraction_is_roughly_respected():
    paths = [f"class/img_{i}.jpg" for i in range(4000)]
    share = sum(hashed_split(p, 0.2) == "validation" for p in paths) / len(paths)
    assert 0.17 < share < 0.23


def test_only_image_files_are_listed_any_case(tmp_path):
    write_images(tmp_path, {"a": 4, "b": 4})
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / "a" / "UPPER.PNG").write_bytes((tmp_path / "a" / "img_001.png").read_bytes())
    (tmp_path / "a" / "photo.WebP").write_bytes(b"x")
    names = {s.path for s in scan_dataset(tmp_path, 0.5).sources}
    assert "a/UPPER.PNG" in names and "a/photo.WebP" in names
    assert not any(n.endswith(("notes.txt", ".DS_Store")) for n in names)


@pytest.mark.parametrize("make_folder, message", [
    (lambda root: None, "Data folder not found"),
    (lambda root: root.mkdir(), "No images in"),
    (lambda root: (write_images(root, {"only": 5}), (root / "empty").mkdir()), "Only one class with images"),
    (lambda root: (write_images(root / "train", {"a": 5}), write_images(root / "validation", {"a": 2, "b": 2})),
     "class folders that train/ lacks: b"),
])
def test_bad_folders_name_the_problem(tmp_path, make_folder, message):
    root = tmp_path / "data"
    make_folder(root)
    with pytest.raises(FeatureError, match=message):
        scan_dataset(root, val_fraction=0.5)


def test_empty_class_folder_is_warned_about_and_not_counted(tmp_path):
    write_images(tmp_path, {"a": 5, "c": 5})
    (tmp_path / "b").mkdir()
    dataset = scan_dataset(tmp_path, 0.5)
    assert dataset.class_names == ("a", "c")
    assert any("no images, not counted as classes: b" in w for w in dataset.warnings)


def test_class_named_train_in_a_flat_folder_is_a_class(tmp_path):
    write_images(tmp_path, {"train": 5, "validation": 5, "zebra": 5})
    dataset = scan_dataset(tmp_path, 0.5)
    assert dataset.layout == "hashed"
    assert dataset.class_names == ("train", "validation", "zebra")
    assert any("'train'" in w for w in dataset.warnings)


def test_broken_links_are_listed_as_unreadable(tmp_path):
    write_images(tmp_path, {"a": 5, "b": 5})
    (tmp_path / "a" / "loop.jpg").symlink_to(tmp_path / "a" / "loop.jpg")
    (tmp_path / "b" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "b" / "linked.png").symlink_to(tmp_path / "a" / "img_001.png")
    dataset = scan_dataset(tmp_path, 0.5)
    assert [path for path, _ in dataset.unreadable] == ["a/loop.jpg", "b/gone.png"]
    assert "b/linked.png" in {s.path for s in dataset.sources}
