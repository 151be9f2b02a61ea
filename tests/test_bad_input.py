"""The long list of awkward files, each a real file on disk: read right, or skipped with a reason."""

import json

import numpy as np
from PIL import Image

from features import FeatureStore, load_pixels
from tests.conftest import extract_args, pattern_image, write_images

SIZE = 32


def rgb(color, size=(40, 30)):
    return Image.new("RGB", size, color)


def exif_rotated_jpeg(path):
    """Stored 40 wide x 20 tall, top half red; EXIF orientation 6 says: rotate 90 degrees clockwise."""
    picture = np.zeros((20, 40, 3), np.uint8)
    picture[:, :20] = (255, 0, 0)  # left half red: after the rotation, the top half
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(picture).save(path, exif=exif.tobytes(), quality=95)


def test_odd_but_valid_images_decode_upright_rgb(tmp_path):
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "alpha.png")
    Image.new("L", (20, 20), 77).save(tmp_path / "grey.png")
    Image.fromarray(np.full((20, 20), 40000, np.uint16)).save(tmp_path / "deep.png")
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    frames = [rgb((0, 0, 255), (20, 20)), rgb((255, 255, 0), (20, 20))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    rgb((10, 200, 10), (1, 1)).save(tmp_path / "one.png")
    exif_rotated_jpeg(tmp_path / "rotated.jpg")

    assert (load_pixels(tmp_path / "alpha.png", SIZE) == 255).all()  # laid over white
    assert (load_pixels(tmp_path / "grey.png", SIZE) == 77).all()
    deep = load_pixels(tmp_path / "deep.png", SIZE)
    assert (deep == 40000 >> 8).all()  # scaled, not clipped to white
    cmyk = load_pixels(tmp_path / "cmyk.jpg", SIZE).mean(axis=(0, 1))
    assert cmyk[0] > 200 and cmyk[1] < 60 and cmyk[2] < 60  # cyan-free, full magenta+yellow: red
    gif = load_pixels(tmp_path / "anim.gif", SIZE).mean(axis=(0, 1))
    assert gif[2] > 200 and gif[0] < 60  # the first (blue) frame
    assert (load_pixels(tmp_path / "one.png", SIZE) == (10, 200, 10)).all()
    rotated = load_pixels(tmp_path / "rotated.jpg", SIZE).astype(int)
    assert rotated[: SIZE // 2 - 2, :, 0].mean() > 200 and rotated[SIZE // 2 + 2:, :, 0].mean() < 60
    for name in ("alpha.png", "deep.png", "cmyk.jpg", "anim.gif", "rotated.jpg"):
        assert load_pixels(tmp_path / name, SIZE).shape == (SIZE, SIZE, 3)


def huge_png(path, side=10_000):
    """A real 10,000 x 10,000 greyscale PNG, written row by row as a few hundred kB of zlib."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\0" + b"\x80" * side
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_extraction_skips_the_unreadable_and_keeps_the_rest(cli, tmp_path):
    data = tmp_path / "data"
    write_images(data, {"cats": 14, "dogs": 14})
    good = (data / "cats" / "img_000.JPG").read_bytes()
    (data / "cats" / "zero.jpg").write_bytes(b"")
    (data / "cats" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (data / "cats" / "text.jpg").write_text("I am not a picture")
    huge_png(data / "dogs" / "bomb.png")
    (data / "dogs" / "loop.jpg").symlink_to(data / "dogs" / "loop.jpg")
    (data / "dogs" / "été photo ü.png").write_bytes((data / "dogs" / "img_001.png").read_bytes())
    (data / "dogs" / "linked.png").symlink_to(data / "dogs" / "img_003.png")
    (data / "dogs" / ".hidden.png").write_bytes(b"hidden")
    (data / "dogs" / ".DS_Store").write_bytes(b"\0\1")
    (data / "birds").mkdir()

    result = cli(*extract_args(data, cli.cache, "--max-bad", "0.2"))
    assert result.exit_code == 0, result.output
    assert "not counted as classes: birds" in result.output
    (folder,) = [p for p in cli.cache.iterdir() if p.is_dir()]
    store = FeatureStore(folder)
    reasons = {entry["path"]: entry["reason"] for entry in store.manifest["skipped"]}
    assert set(reasons) == {"cats/zero.jpg", "cats/truncated.jpg", "cats/text.jpg", "dogs/bomb.png",
                            "dogs/loop.jpg"}
    assert "DecompressionBomb" in reasons["dogs/bomb.png"]
    assert "Skipped 5 unreadable file(s)" in result.output
    assert store.class_names == ["cats", "dogs"]
    paths = {p for split in store.splits for p in store.source_paths(store.split_arrays(split)["sources"])}
    assert {"dogs/été photo ü.png", "dogs/linked.png"} <= paths
    assert not any(p.startswith("dogs/.") for p in paths) and len(paths) == 14 + 14 + 2


def test_too_many_unreadable_files_fail_after_saving_the_work(cli, tmp_path):
    data = tmp_path / "data"
    write_images(data, {"cats": 10, "dogs": 10})
    for n in range(3):
        (data / "dogs" / f"bad{n}.jpg").write_text("no")
    result = cli(*extract_args(data, cli.cache))
    assert result.exit_code == 1 and "3 of 23 images could not be read" in result.output
    (folder,) = [p for p in cli.cache.iterdir() if p.is_dir()]
    assert json.loads((folder / "manifest.json").read_text())["shards"], "computed shards were kept"
    assert cli(*extract_args(data, cli.cache, "--max-bad", "0.2")).exit_code == 0


def test_an_unlabelled_test_folder_is_left_out_and_listed_not_counted_as_unreadable(cli, tmp_path):
    """Kaggle's layout: train/<class>/ labelled, test/ a loose folder of photos to classify."""
    data = tmp_path / "data"
    write_images(data / "train", {"cats": 10, "dogs": 10})
    (data / "test").mkdir()
    for n in range(5):
        rgb((n * 40, 0, 0)).save(data / "test" / f"{n}.jpg")
    result = cli(*extract_args(data, cli.cache))  # max-bad 1%: five loose photos of 25 are no failure
    assert result.exit_code == 0, result.output
    assert "5 image(s) lie outside any class folder (test/0.jpg, test/1.jpg, test/2.jpg ...)" in result.output
    (folder,) = [p for p in cli.cache.iterdir() if p.is_dir()]
    store = FeatureStore(folder)
    assert store.manifest["unlabelled"] == [f"test/{n}.jpg" for n in range(5)]
    assert store.manifest["skipped"] == [] and sum(len(store.split_arrays(s)["labels"]) for s in store.splits) == 20


def test_files_the_scan_finds_unreadable_fail_before_any_extraction(cli, tmp_path):
    data = tmp_path / "data"
    write_images(data, {"cats": 10, "dogs": 10})
    for n in range(3):
        (data / "dogs" / f"gone{n}.jpg").symlink_to(tmp_path / "nowhere.jpg")
    result = cli(*extract_args(data, cli.cache))
    assert result.exit_code == 1 and "3 of 23 images could not be read" in result.output
    assert "features:" not in result.output  # no progress: nothing was computed, nor calibrated
    assert not list(cli.cache.glob("*/manifest.json"))


def test_a_class_left_with_no_readable_image_fails(cli, tmp_path):
    data = tmp_path / "data"
    write_images(data, {"cats": 10})
    (data / "dogs").mkdir()
    for n in range(6):
        (data / "dogs" / f"bad{n}.jpg").write_text("no")
    result = cli(*extract_args(data, cli.cache, "--max-bad", "1"))
    assert result.exit_code == 1
    assert "No readable" in result.output and "dogs" in result.output


def test_tiff_avif_and_jfif_photos_are_read_and_heic_is_skipped_saying_why(cli, tmp_path):
    """Aerial and scanned sets come as TIFF, photos saved from the web as JFIF or AVIF, a phone's
    as HEIC: what Pillow decodes is read (a TIFF's pixels are its PNG's), the rest left out saying why."""
    data = tmp_path / "data"
    write_images(data, {"cats": 8, "dogs": 8})
    for label, name in enumerate(("cats", "dogs")):
        picture = pattern_image(label, 50)
        picture.save(data / name / "scan.tif")
        picture.save(data / name / "aerial.TIFF", compression="tiff_lzw")
        picture.save(data / name / "web.jfif", format="JPEG")
        picture.save(data / name / "new.avif")
        (data / name / "phone.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    (data / "dogs" / "lost its dot").write_bytes((data / "dogs" / "scan.tif").read_bytes())
    pattern_image(0, 50).save(tmp_path / "scan.png")
    assert (load_pixels(data / "cats" / "scan.tif", SIZE) == load_pixels(tmp_path / "scan.png", SIZE)).all()

    result = cli(*extract_args(data, cli.cache, "--max-bad", "0.2"))
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in cli.cache.iterdir() if p.is_dir()]
    store = FeatureStore(folder)
    reasons = {entry["path"]: entry["reason"] for entry in store.manifest["skipped"]}
    assert reasons == {f"{name}/phone.HEIC": "HEIC is not a format this tool decodes; convert it to JPEG or PNG"
                       for name in ("cats", "dogs")}
    paths = {p for split in store.splits for p in store.source_paths(store.split_arrays(split)["sources"])}
    assert {f"{name}/{file}" for name in ("cats", "dogs")
            for file in ("scan.tif", "aerial.TIFF", "web.jfif", "new.avif")} | {"dogs/lost its dot"} <= paths
