"""Folder scanning: classes, layouts, stable splits and the errors for bad folders."""

import shutil

import pytest

from features import FeatureError, scan_dataset
from features.dataset import hash_position, hashed_split
from pipeline.predict import expand_image_paths
from tests.conftest import SHARED, pattern_image, write_images


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


def test_a_small_class_keeps_a_photo_on_each_side_of_the_hashed_carve(tmp_path):
    """b's two photos both hash under 0.2 (validation), c's both over it, d's one under it: the
    photo nearest the boundary crosses, so b trains on one, c is measured on one and d trains."""
    positions = {path: hash_position(path) for path in ("b/7.png", "b/10.png", "c/0.png", "c/1.png", "d/12.png")}
    assert positions["b/10.png"] < positions["b/7.png"] < 0.2 < positions["c/1.png"] < positions["c/0.png"]
    assert positions["d/12.png"] < 0.2
    write_images(tmp_path, {"a": 12})
    for number, path in enumerate(positions):
        (tmp_path / path).parent.mkdir(exist_ok=True)
        pattern_image(number + 1, number).save(tmp_path / path)
    split = {s.path: s.split for s in scan_dataset(tmp_path).sources}
    assert {path: split[path] for path in positions} == {
        "b/7.png": "train", "b/10.png": "validation", "c/0.png": "train", "c/1.png": "validation",
        "d/12.png": "train"}
    assert all(split[path] == hashed_split(path, 0.2) for path in split if path.startswith("a/"))


def test_class_folders_of_split_folders_keep_their_splits(tmp_path):
    """root/<class>/{train,val,test}/: some data sets ship class first; the test photos must not
    be pooled into training."""
    for offset, name in enumerate(("cats", "dogs")):
        write_images(tmp_path / name, {"Train": 6, "val": 2, "test": 3}, label_offset=3 * offset)
    dataset = scan_dataset(tmp_path)
    assert dataset.layout == "splits" and dataset.class_names == ("cats", "dogs")
    folder_split = {"Train": "train", "val": "validation", "test": "test"}
    assert all(source.split == folder_split[source.path.split("/")[1]] for source in dataset.sources)
    assert [len(dataset.indices(split)) for split in ("train", "validation", "test")] == [12, 4, 6]
    assert any("read as root/<class>/<split>/" in warning for warning in dataset.warnings)


def test_class_folders_of_train_and_test_folders_carve_validation_from_train(tmp_path):
    for offset, name in enumerate(("cats", "dogs")):
        write_images(tmp_path / name, {"train": 20, "test": 3}, label_offset=2 * offset)
    dataset = scan_dataset(tmp_path)
    by_folder = {}
    for source in dataset.sources:
        by_folder.setdefault(source.path.split("/")[1], set()).add(source.split)
    assert by_folder == {"train": {"train", "validation"}, "test": {"test"}}
    assert any("No validation folder in the class folders" in warning for warning in dataset.warnings)


def test_split_folders_in_some_class_folders_only_are_pooled_saying_so(tmp_path):
    write_images(tmp_path / "cats", {"train": 6, "test": 3})
    write_images(tmp_path, {"dogs": 9}, label_offset=2)
    dataset = scan_dataset(tmp_path)
    assert dataset.layout == "hashed" and len(dataset.sources) == 18
    assert any(warning.startswith("cats/ holds split folders, but not every class folder holds them alone")
               for warning in dataset.warnings)
    flat = scan_dataset(tmp_path, layout="flat")  # asked for: pooled, nothing to say
    assert flat.layout == "hashed" and not any("split folders" in warning for warning in flat.warnings)


def test_folders_named_like_splits_are_refused_as_classes_unless_asked_for(tmp_path):
    """Intel's scene photos unpack as seg_train/, seg_test/ and seg_pred/: read as three classes
    they would train a classifier of splits."""
    for offset, name in enumerate(("seg_train", "seg_test", "seg_pred")):
        write_images(tmp_path / name, {name: 4}, label_offset=offset)
    with pytest.raises(FeatureError, match=r"named like splits, not classes \(seg_test, seg_train\).*"
                                           r"named train/, val/ or test/.*`layout` flat"):
        scan_dataset(tmp_path)
    assert scan_dataset(tmp_path, layout="flat").class_names == ("seg_pred", "seg_test", "seg_train")


def test_one_class_named_with_a_split_word_is_a_class(tmp_path):
    write_images(tmp_path, {"test_tube": 5, "beaker": 5})
    assert scan_dataset(tmp_path).class_names == ("beaker", "test_tube")


def test_photos_labelled_by_a_csv_file_are_told_that_folders_are_the_labels(tmp_path):
    write_images(tmp_path, {"images": 6})
    (tmp_path / "labels.csv").write_text("file,label\nimg_000.JPG,cat\n")
    with pytest.raises(FeatureError, match=r"Only one class .*\(images\).*Labels listed in a file "
                                           r"\(labels.csv\) are not read"):
        scan_dataset(tmp_path)
    for path in (tmp_path / "images").iterdir():
        path.rename(tmp_path / path.name)
    with pytest.raises(FeatureError, match=r"6 image\(s\) in .* lie outside any class folder\. Lay the images "
                                           r"out as .*/<class>/\*\.jpg\. Labels listed in a file"):
        scan_dataset(tmp_path)


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


def test_a_root_mixing_split_and_class_folders_is_refused_unless_flat(tmp_path):
    write_images(tmp_path, {"train": 5, "Validation": 5, "zebra": 5})
    with pytest.raises(FeatureError, match=r"mixes split folders \(Validation, train\) with other folders "
                                           r"\(zebra\).*`layout` flat"):
        scan_dataset(tmp_path, 0.5)
    dataset = scan_dataset(tmp_path, 0.5, layout="flat")
    assert dataset.layout == "hashed" and dataset.warnings == ()
    assert dataset.class_names == ("Validation", "train", "zebra")


def test_broken_links_are_listed_as_unreadable(tmp_path):
    write_images(tmp_path, {"a": 5, "b": 5})
    (tmp_path / "a" / "loop.jpg").symlink_to(tmp_path / "a" / "loop.jpg")
    (tmp_path / "b" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "b" / "linked.png").symlink_to(tmp_path / "b" / "img_001.png")
    dataset = scan_dataset(tmp_path, 0.5)
    assert [path for path, _ in dataset.unreadable] == ["a/loop.jpg", "b/gone.png"]
    assert {"b/linked.png", "b/img_001.png"} <= {s.path for s in dataset.sources}


@pytest.mark.parametrize("train, validation, test", [
    ("train", "validation", None), ("Training", "Validation", "Testing"), ("TRAIN", "val", "test"),
    ("training", "valid", None), ("train", "Dev", "TEST"),
])
def test_split_folder_names_in_any_case(tmp_path, train, validation, test):
    write_images(tmp_path / train, {"cats": 6, "dogs": 6})
    write_images(tmp_path / validation, {"cats": 2, "dogs": 2}, start=100)
    if test:
        write_images(tmp_path / test, {"cats": 3, "dogs": 3}, start=200)
    dataset = scan_dataset(tmp_path)
    assert dataset.layout == "splits" and dataset.class_names == ("cats", "dogs")
    folders = {"train": train, "validation": validation, "test": test}
    assert all(s.path.split("/")[0] == folders[s.split] for s in dataset.sources)  # kept as on disk
    assert [len(dataset.indices(split)) for split in dataset.splits()] == [12, 4] + ([6] if test else [])
    assert dataset.warnings == () and dataset.unreadable == ()


def test_without_a_validation_folder_validation_is_carved_from_train(tmp_path):
    write_images(tmp_path / "train", {"cats": 20, "dogs": 20})
    write_images(tmp_path / "test", {"cats": 3, "dogs": 3}, start=200)
    dataset = scan_dataset(tmp_path, val_fraction=0.3)
    assert dataset.layout == "splits"
    for source in dataset.sources:
        expected = "test" if source.path.startswith("test/") else hashed_split(source.path, 0.3)
        assert source.split == expected
    assert dataset.indices("validation") and len(dataset.indices("test")) == 6
    (warning,) = dataset.warnings
    assert "No validation folder" in warning and "30% of train/" in warning


@pytest.mark.parametrize("folders, message", [
    (("train", "val", "validation"), "val and validation in .* are both validation split folders"),
    (("Training", "train", "val"), "Training and train in .* are both train split folders"),
    (("test", "val"), r"No training split folder \(train/ or training/\) in .*; found: test, val"),
])
def test_split_layouts_that_cannot_be_read(tmp_path, folders, message):
    for number, folder in enumerate(folders):
        write_images(tmp_path / folder, {"cats": 3, "dogs": 3}, start=10 * number)
    with pytest.raises(FeatureError, match=message):
        scan_dataset(tmp_path, 0.5)


def test_layout_split_on_a_flat_folder_is_refused(flat_folder):
    with pytest.raises(FeatureError, match="No training split folder .*found: alpha, beta, gamma"):
        scan_dataset(flat_folder, layout="split")
    with pytest.raises(FeatureError, match="`layout` must be one of auto, flat, split"):
        scan_dataset(flat_folder, layout="splits")


def test_a_class_only_in_validation_is_refused_whatever_the_folder_names(tmp_path):
    write_images(tmp_path / "Training", {"a": 4, "b": 4})
    write_images(tmp_path / "dev", {"a": 2, "c": 2})
    with pytest.raises(FeatureError, match="dev has class folders that Training/ lacks: c"):
        scan_dataset(tmp_path)


def test_a_split_folder_naming_a_class_in_another_case_or_composition_joins_that_class(tmp_path):
    cafe, decomposed = "caf\u00e9", "cafe\u0301"  # as typed on Linux; as a Mac's file system spells it
    write_images(tmp_path / "train", {"Cats": 4, cafe: 4, "dogs": 4})
    write_images(tmp_path / "val", {"cats": 2, decomposed: 2, "dogs": 2}, start=10)
    dataset = scan_dataset(tmp_path)
    assert dataset.class_names == ("Cats", cafe, "dogs")
    validation = [(source.path, dataset.class_names[source.label]) for source in dataset.sources
                  if source.split == "validation"]
    assert sorted(name for _, name in validation) == ["Cats", "Cats", cafe, cafe, "dogs", "dogs"]
    assert all(path.startswith("val/cats/") for path, name in validation if name == "Cats")
    assert any("read as its classes: " in warning and "val/cats as Cats" in warning for warning in dataset.warnings)


def test_a_case_match_among_two_training_classes_is_still_refused(tmp_path):
    write_images(tmp_path / "train", {"Cats": 4, "CATS": 4})
    write_images(tmp_path / "val", {"cats": 2, "Cats": 2}, start=10)
    with pytest.raises(FeatureError, match="val has class folders that train/ lacks: cats"):
        scan_dataset(tmp_path)


def test_images_outside_class_folders_are_listed_as_unlabelled_not_unreadable(split_folder):
    shutil.copy(split_folder / "train" / "cats" / "img_000.JPG", split_folder / "train" / "stray.jpg")
    (split_folder / "validation" / "loose.png").write_bytes(b"x")
    (split_folder / "train" / "notes.txt").write_text("not an image")
    (split_folder / "top.jpg").write_bytes(b"x")
    dataset = scan_dataset(split_folder)
    assert dataset.unlabelled == ("top.jpg", "train/stray.jpg", "validation/loose.png")
    assert dataset.unreadable == ()
    assert any("3 image(s) lie outside any class folder (top.jpg, train/stray.jpg, validation/loose.png)"
               in warning for warning in dataset.warnings)
    assert len(dataset.sources) == 28


def test_folders_that_systems_leave_beside_photos_are_neither_classes_nor_photos(split_folder):
    """A zip made on a Mac unpacks a __MACOSX folder of `._` files beside the splits; a Synology
    server keeps thumbnails of each photo in @eaDir folders inside the class folders."""
    macosx = split_folder / "__MACOSX" / "train" / "cats"
    macosx.mkdir(parents=True)
    (macosx / "._img_000.JPG").write_bytes(b"\0\5\26\7 AppleDouble")
    thumbnails = split_folder / "train" / "dogs" / "@eaDir" / "img_001.png"
    thumbnails.mkdir(parents=True)
    shutil.copy(split_folder / "train" / "dogs" / "img_001.png", thumbnails / "SYNOPHOTO_THUMB_S.png")
    (split_folder / "validation" / "$RECYCLE.BIN").mkdir()
    dataset = scan_dataset(split_folder)
    assert dataset.layout == "splits" and dataset.class_names == ("cats", "dogs")
    assert not any("@eaDir" in source.path for source in dataset.sources)
    assert len(dataset.sources) == 28 and dataset.unreadable == () and dataset.warnings == ()


def test_predict_on_a_folder_skips_thumbnails_in_hidden_and_system_folders(split_folder):
    cats = split_folder / "train" / "cats"
    for folder in (cats / "@eaDir" / "img_000.JPG", cats / ".thumbnails"):
        folder.mkdir(parents=True)
        shutil.copy(cats / "img_000.JPG", folder / "thumb.jpg")
    (cats / "nested").mkdir()
    shutil.copy(cats / "img_000.JPG", cats / "nested" / "kept.jpg")
    paths = expand_image_paths([cats])
    assert [path.relative_to(cats).as_posix() for path in paths] == [
        *(f"img_{n:03d}.{'png' if n % 2 else 'JPG'}" for n in range(10)), "nested/kept.jpg"]


MONKEYS = SHARED / "data" / "monkeys_10"


@pytest.mark.skipif(not MONKEYS.is_dir(), reason=f"needs the 10 Monkey Species photos at {MONKEYS}")
def test_monkeys_training_and_validation_folders_scan_as_ten_classes():
    dataset = scan_dataset(MONKEYS)
    assert dataset.layout == "splits"
    assert dataset.class_names == tuple(f"n{i}" for i in range(10))
    assert dataset.splits() == ["train", "validation"]
    assert all(s.path.startswith(("training/", "validation/")) for s in dataset.sources)
    # the one photo that lost its dot is read by its content, and said so
    assert "training/n9/n9151jpg" in {s.path for s in dataset.sources}
    assert len(dataset.warnings) == 2 and "n9151jpg" in dataset.warnings[0]
    # the data set holds 68 same-bytes copies within classes, none across the split folders
    assert dataset.warnings[1].startswith("68 photo(s) are same-bytes copies") and len(dataset.twins) == 67


def test_a_photo_that_lost_its_extension_is_read_by_its_content(tmp_path):
    root = tmp_path / "photos"
    write_images(root, {"a": 12, "b": 12})
    (root / "a" / "img_000.JPG").rename(root / "a" / "img_000JPG")
    (root / "b" / "notes").write_text("not a photo")
    dataset = scan_dataset(root)
    paths = {source.path for source in dataset.sources}
    assert "a/img_000JPG" in paths and "b/notes" not in paths
    assert any("img_000JPG" in warning for warning in dataset.warnings)


def copies_that_hash_apart(folder, original, count: int) -> list[str]:
    """Write ``count`` same-bytes copies of ``original`` in ``folder``, named so that their paths
    alone would put them on both sides of a 0.5 split (the test could fail)."""
    names = [f"copy_{number:02d}.png" for number in range(count)]
    assert len({hashed_split(f"{folder.name}/{name}", 0.5) for name in names}) == 2
    for name in names:
        (folder / name).write_bytes(original.read_bytes())
    return names


def test_same_bytes_copies_in_a_class_share_a_split_and_are_counted(tmp_path):
    write_images(tmp_path, {"cats": 6, "dogs": 6})
    copies_that_hash_apart(tmp_path / "cats", tmp_path / "cats" / "img_001.png", 8)
    dataset = scan_dataset(tmp_path, val_fraction=0.5)
    by_path = {s.path: i for i, s in enumerate(dataset.sources)}
    (twins,) = dataset.twins
    assert sorted(dataset.sources[i].path for i in twins) == ["cats/copy_00.png", *[
        f"cats/copy_{n:02d}.png" for n in range(1, 8)], "cats/img_001.png"]
    assert len({dataset.sources[i].split for i in twins}) == 1
    assert dataset.sources[by_path["cats/img_001.png"]].split == hashed_split("cats/copy_00.png", 0.5)
    assert any("8 photo(s) are same-bytes copies" in warning for warning in dataset.warnings)


def test_copies_across_split_folders_are_kept_where_the_user_put_them_and_reported(tmp_path):
    write_images(tmp_path / "train", {"cats": 3, "dogs": 3})
    write_images(tmp_path / "validation", {"cats": 2, "dogs": 2}, start=10)
    shutil.copy(tmp_path / "train" / "cats" / "img_001.png", tmp_path / "validation" / "cats" / "same.png")
    dataset = scan_dataset(tmp_path)
    (twins,) = dataset.twins
    assert {dataset.sources[i].split for i in twins} == {"train", "validation"}
    assert any("1 set(s) of copies lie in different split folders" in warning for warning in dataset.warnings)


def test_a_stores_groups_keep_copies_in_one_cross_validation_fold(cli, tmp_path):
    from features import FeatureStore
    from heads._sklearn import grouped_folds
    from tests.conftest import extract_args

    photos = tmp_path / "photos"
    write_images(photos, {"cats": 8, "dogs": 8})
    copies_that_hash_apart(photos / "cats", photos / "cats" / "img_001.png", 6)
    result = cli(*extract_args(photos, cli.cache, "--val-fraction", "0.5"))
    assert result.exit_code == 0 and "6 photo(s) are same-bytes copies" in result.output
    store = FeatureStore(cli.cache / (cli.cache / "LATEST").read_text().strip())
    train = store.split_arrays("train", passes=False)
    groups = store.source_groups(train["sources"])
    paths = store.source_paths(train["sources"])
    copies = [i for i, path in enumerate(paths) if "copy_" in path or path == "cats/img_001.png"]
    assert len(copies) == 7 and len(set(groups[copies])) == 1  # all on the training side, one group
    for fit_rows, held_out in grouped_folds(train["labels"], groups, 3):
        assert set(copies) <= set(fit_rows) or set(copies) <= set(held_out)
