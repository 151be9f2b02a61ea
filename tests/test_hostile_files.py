"""Hostile input: every image is accounted for, nothing hangs, every refusal is one FeatureError."""

import hashlib
import json
import os
import shutil
import socket
import threading
from dataclasses import asdict

import numpy as np
import pytest

from features import FeatureError, FeatureStore, load_pixels, scan_dataset
from features.dataset import hashed_split
from features.images import MAX_FILE_BYTES
from tests.conftest import extract_args, pattern_image, write_images

SIZE = 32
AS_ROOT = os.geteuid() == 0


def finishes(function, *args, seconds=20):
    """``function(*args)``, failing the test (rather than hanging it) if it takes too long."""
    outcome = {}

    def run():
        try:
            outcome["value"] = function(*args)
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} still blocked after {seconds}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def unix_socket(path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    return server


def reasons(dataset):
    return dict(dataset.unreadable)


def test_fifos_sockets_and_devices_are_listed_without_being_opened(tmp_path):
    write_images(tmp_path, {"a": 5, "b": 5})
    os.mkfifo(tmp_path / "a" / "pipe.jpg")
    server = unix_socket(tmp_path / "b" / "s.png")
    (tmp_path / "b" / "null.jpg").symlink_to("/dev/null")
    os.mkfifo(tmp_path / "b" / "pipe.txt")  # not an image name: ignored
    try:
        dataset = finishes(scan_dataset, tmp_path, 0.5)
    finally:
        server.close()
    assert reasons(dataset) == {
        "a/pipe.jpg": "not a regular file but a FIFO; not opened",
        "b/s.png": "not a regular file but a socket; not opened",
        "b/null.jpg": "not a regular file but a character device; not opened",
    }
    assert len(dataset.sources) == 10


def test_load_pixels_refuses_what_is_not_a_regular_file_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    server = unix_socket(tmp_path / "s.png")
    (tmp_path / "folder.png").mkdir()
    try:
        for path, kind in [(tmp_path / "pipe.jpg", "a FIFO"), (tmp_path / "s.png", "a socket"),
                           ("/dev/zero", "a character device"), (tmp_path / "folder.png", "a folder")]:
            with pytest.raises(ValueError, match=f"not a regular file but {kind}"):
                finishes(load_pixels, path, SIZE)
    finally:
        server.close()


def test_load_pixels_refuses_a_file_over_the_size_limit_without_reading_it(tmp_path):
    write_images(tmp_path, {"a": 1})
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as file:
        file.write((tmp_path / "a" / "img_000.JPG").read_bytes())
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written to disk
    with pytest.raises(ValueError, match="over the 256 MiB limit for one image file"):
        load_pixels(huge, SIZE)
    assert load_pixels(tmp_path / "a" / "img_000.JPG", SIZE).shape == (SIZE, SIZE, 3)


@pytest.mark.skipif(AS_ROOT, reason="runs as root, which reads folders whatever their permissions")
def test_a_folder_without_read_permission_is_listed(tmp_path):
    write_images(tmp_path, {"a": 5, "b": 5})
    write_images(tmp_path / "a" / "locked", {"inner": 2})
    (tmp_path / "a" / "locked").chmod(0)
    try:
        dataset = scan_dataset(tmp_path, 0.5)
    finally:
        (tmp_path / "a" / "locked").chmod(0o755)
    assert reasons(dataset) == {"a/locked": "folder not read (PermissionError: Permission denied)"}


def test_a_folder_that_cannot_be_listed_is_listed_even_for_root(tmp_path):
    """A path longer than the system's limit fails to list for every user, root included."""
    write_images(tmp_path, {"a": 5, "b": 5})
    name = "d" * 250
    depth = 4096 // len(name) + 2
    descriptor = os.open(tmp_path / "a", os.O_RDONLY)
    try:
        for _ in range(depth):  # made one level at a time, relative to the folder above
            os.mkdir(name, dir_fd=descriptor)
            inner = os.open(name, os.O_RDONLY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = inner
    finally:
        os.close(descriptor)
    dataset = scan_dataset(tmp_path, 0.5)
    ((path, reason),) = dataset.unreadable
    assert path.startswith("a/" + name) and "folder not read (OSError: File name too long)" == reason
    shutil.rmtree(tmp_path / "a" / name)


def link_class(root):
    write_images(root, {"a": 5, "c": 5})
    (root / "b").symlink_to(root / "a", target_is_directory=True)
    return root / "b"


def link_split(root):
    write_images(root / "train", {"cats": 5, "dogs": 5})
    write_images(root.parent / "elsewhere", {"cats": 2, "dogs": 2}, start=100)
    (root / "validation").symlink_to(root.parent / "elsewhere", target_is_directory=True)
    return root / "validation"


def link_class_in_split(root):
    write_images(root / "train", {"cats": 5})
    write_images(root / "validation", {"cats": 2}, start=100)
    (root / "train" / "dogs").symlink_to(root / "train" / "cats", target_is_directory=True)
    return root / "train" / "dogs"


@pytest.mark.parametrize("make_link", [link_class, link_split, link_class_in_split])
def test_a_linked_class_or_split_folder_is_refused(tmp_path, make_link):
    link = make_link(tmp_path / "data")
    with pytest.raises(FeatureError, match=f"{link} is a link to a folder.*Replace the link"):
        scan_dataset(tmp_path / "data", 0.5)


def test_a_linked_folder_inside_a_class_is_listed_not_followed(tmp_path):
    write_images(tmp_path, {"a": 5, "b": 5})
    (tmp_path / "a" / "more").symlink_to(tmp_path / "b", target_is_directory=True)
    (tmp_path / "a" / "again.jpg").symlink_to(tmp_path / "a", target_is_directory=True)
    dataset = scan_dataset(tmp_path, 0.5)
    assert reasons(dataset) == {"a/more": "link to a folder, not followed",
                                "a/again.jpg": "link to a folder, not followed"}
    assert len(dataset.sources) == 10


@pytest.mark.parametrize("make, what", [
    (lambda first, second: second.symlink_to(first), "are one file"),
    (lambda first, second: os.link(first, second), "are one file"),
    (lambda first, second: second.write_bytes(first.read_bytes()), "hold the same bytes"),
])
def test_one_photo_under_two_classes_is_refused_naming_both(tmp_path, make, what):
    write_images(tmp_path, {"cats": 5, "dogs": 5})
    make(tmp_path / "cats" / "img_002.JPG", tmp_path / "dogs" / "copy.jpg")
    with pytest.raises(FeatureError, match=f"cats/img_002.JPG and dogs/copy.jpg in .* are under two "
                                           rf"classes \(cats, dogs\) but {what}.*delete the wrong copy"):
        scan_dataset(tmp_path, 0.5)


def test_equal_bytes_that_are_no_image_are_skipped_and_reported_not_refused(cli, tmp_path):
    """A failed download leaves empty files and error pages saved as .jpg, the same bytes in
    several classes: not one photo under two classes. Extraction skips and reports each."""
    data = tmp_path / "data"
    write_images(data, {"cats": 10, "dogs": 10})
    for name in ("cats", "dogs"):
        (data / name / "empty.jpg").write_bytes(b"")
        (data / name / "error.jpg").write_bytes(b"<html>404 Not Found</html>")
        (data / name / "error again.jpg").write_bytes(b"<html>404 Not Found</html>")
    result = cli(*extract_args(data, cli.cache, "--max-bad", "0.3"))
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in cli.cache.iterdir() if p.is_dir()]
    skipped = {entry["path"] for entry in FeatureStore(folder).manifest["skipped"]}
    assert skipped == {f"{name}/{file}" for name in ("cats", "dogs")
                       for file in ("empty.jpg", "error.jpg", "error again.jpg")}
    assert "Skipped 6 unreadable file(s)" in result.output
    assert "same-bytes copies" not in result.output


def test_copies_within_a_class_and_equal_sizes_across_classes_are_kept(tmp_path):
    write_images(tmp_path, {"cats": 5, "dogs": 5})
    (tmp_path / "cats" / "copy.jpg").write_bytes((tmp_path / "cats" / "img_002.JPG").read_bytes())
    os.link(tmp_path / "cats" / "img_003.png", tmp_path / "cats" / "hard.png")
    (tmp_path / "cats" / "x.jpg").write_bytes(b"A" * 300)
    (tmp_path / "dogs" / "y.jpg").write_bytes(b"B" * 300)
    dataset = scan_dataset(tmp_path, 0.5)
    assert {"cats/copy.jpg", "cats/hard.png", "cats/x.jpg", "dogs/y.jpg"} <= {s.path for s in dataset.sources}


def test_names_that_are_not_utf8_are_scanned_and_survive_json(tmp_path):
    write_images(tmp_path, {"plain": 4})
    raw_root = os.fsencode(tmp_path)
    os.mkdir(raw_root + b"/caf\xe9")
    for number in range(4):
        pattern_image(1, number).save(os.fsdecode(raw_root + b"/caf\xe9/\xff" + str(number).encode() + b".png"))
    os.mkfifo(raw_root + b"/caf\xe9/\xfe.jpg")
    dataset = scan_dataset(tmp_path, 0.5)
    assert dataset.class_names == ("caf\udce9", "plain")
    assert dict(dataset.unreadable) == {"caf\udce9/\udcfe.jpg": "not a regular file but a FIFO; not opened"}
    odd = [s for s in dataset.sources if s.label == 0]
    assert len(odd) == 4 and odd[0].path == "caf\udce9/\udcff0.png"
    for source in odd:
        digest = hashlib.sha1(os.fsencode(source.path)).digest()
        assert source.split == ("validation" if int.from_bytes(digest[:8], "big") / 2**64 < 0.5 else "train")
        assert load_pixels(dataset.root / source.path, SIZE).shape == (SIZE, SIZE, 3)
    records = [asdict(source) for source in dataset.sources]
    assert json.loads(json.dumps(records)) == records
    assert json.loads(json.dumps(dataset.unreadable)) == [list(entry) for entry in dataset.unreadable]


def test_utf8_names_keep_their_split():
    path = "été/photo ü.png"
    digest = hashlib.sha1(path.encode("utf-8")).digest()
    before = "validation" if int.from_bytes(digest[:8], "big") / 2**64 < 0.3 else "train"
    assert hashed_split(path, 0.3) == before


def test_a_duplicate_class_error_names_odd_bytes_printably(tmp_path):
    write_images(tmp_path, {"a": 3, "b": 3})
    shutil.copy(tmp_path / "a" / "img_000.JPG", os.fsencode(tmp_path) + b"/b/\xff.jpg")
    with pytest.raises(FeatureError) as caught:
        scan_dataset(tmp_path, 0.5)
    assert "b/\\xff.jpg" in str(caught.value)
    str(caught.value).encode("utf-8")  # printable: no lone surrogates


def test_features_skips_and_reports_hostile_entries_without_hanging(cli, tmp_path):
    data = tmp_path / "data"
    write_images(data, {"cats": 10, "dogs": 10})
    os.mkfifo(data / "cats" / "pipe.jpg")
    (data / "dogs" / "deeper").symlink_to(data / "cats", target_is_directory=True)
    (data / "loose.jpg").write_bytes(b"x")
    result = finishes(cli, *extract_args(data, cli.cache, "--max-bad", "0.2"), seconds=300)
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in cli.cache.iterdir() if p.is_dir()]
    manifest = FeatureStore(folder).manifest
    assert {entry["path"] for entry in manifest["skipped"]} == {"cats/pipe.jpg", "dogs/deeper"}
    assert manifest["unlabelled"] == ["loose.jpg"]
    assert "Skipped 2 unreadable file(s)" in result.output
    assert np.isfinite(FeatureStore(folder).split_arrays("train")["features"]).all()
