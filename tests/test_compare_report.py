"""compare as a scientist would use it: reproducible, intervals, significance, report, export."""

import itertools
import json
from html.parser import HTMLParser
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image, ImageOps

from features import load_pixels
from features.calibration import model_identity
from pipeline.stats import mcnemar
from tests.conftest import extract_args, make_cli, pattern_image, quick_dense_defaults, write_three_classes


@pytest.fixture(scope="module", autouse=True)
def quick_dense_head():
    """Every compare here, ``compared`` first, fits the dense head with fewer epochs."""
    with quick_dense_defaults():
        yield


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One `compare` of every head, made once for this file: three classes in train/validation/test
    folders, extracted with one augmented pass.

    Returns (cli, data folder, runs folder of the store, leaderboard, compare's CLI result)."""
    cli = make_cli(tmp_path_factory.mktemp("compare"))
    data = write_three_classes(cli.cache.parent / "data", train=14, validation=6, test=5)
    assert cli(*extract_args(data, cli.cache, "--passes", "1")).exit_code == 0
    result = cli("compare", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 0, result.output
    (board_path,) = list(cli.runs.glob("*/leaderboard.json"))
    return cli, data, board_path.parent, json.loads(board_path.read_text()), result


@pytest.fixture(scope="module")
def cli(compared):
    """The cache and runs folder of the shared comparison: the comparison is made once."""
    return compared[0]


def test_compare_ranks_every_head(compared):
    _, _, folder, _, result = compared
    board = folder / "leaderboard.json"
    rows = json.loads(board.read_text())["rows"]
    assert sorted(row["head"] for row in rows) == ["dense", "ensemble", "logreg", "svm"]
    assert [row["rank"] for row in rows] == [1, 2, 3, 4]
    for row in rows:  # each row names the exact model it scored
        recorded = json.loads((folder / row["head"] / "run.json").read_text())["model_sha256"]
        assert row["model"] == model_identity(recorded) and row["model"].startswith("sha256:")
    accuracies = [row["accuracy"] for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    markdown = (board.parent / "leaderboard.md").read_text()
    assert all(row["head"] in markdown for row in rows) and "| rank | head |" in markdown
    for row in rows:
        assert row["head"] in result.output


def test_compare_twice_gives_the_same_numbers(cli, compared):
    _, _, folder, board, _ = compared
    assert cli("compare", "--cache", cli.cache, "--runs", cli.runs).exit_code == 0
    again = json.loads((folder / "leaderboard.json").read_text())
    # timings vary, and a .keras zip stamps its save time (so a refitted model has another identity);
    # every statistic must repeat exactly
    strip = lambda b: [{k: v for k, v in r.items() if k not in ("fit_seconds", "predict_ms_per_image", "model_bytes",
                                                                 "model")}
                       for r in b["rows"]]
    for a, b in zip(strip(again), strip(board)):
        assert a == b, {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert again["pairwise"] == board["pairwise"]


def test_leaderboard_has_intervals_tests_and_a_test_split_verdict(compared):
    _, _, folder, board, result = compared
    for row in board["rows"]:
        metrics = json.loads((folder / row["head"] / "metrics.json").read_text())
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "ece"):
            low, high = row["intervals_95"][key]
            assert low <= row[key] <= high and row[key] == metrics[key]
        assert row["model_bytes"] > 0 and row["predict_ms_per_image"] > 0
        run = json.loads((folder / row["head"] / "run.json").read_text())
        if row["head"] in ("logreg", "svm"):
            assert set(run["details"]["best_params"]) >= {"C"}
        if row["head"] == "dense":  # epochs chosen on the grouped holdout, then refitted on every row
            assert run["details"]["refitted"] and run["details"]["rows_seen"] == run["train_rows"]
        if row["head"] == "ensemble":  # the members compare had fitted, not fitted again
            assert run["details"]["reused"] == ["logreg", "svm", "dense"]
            assert "+".join(run["details"]["chosen"]) in run["details"]["cv_scores"]
    assert {frozenset((p["a"], p["b"])) for p in board["pairwise"]} == {
        frozenset(p) for p in itertools.combinations(("dense", "logreg", "svm", "ensemble"), 2)}
    cv = {row["head"]: json.loads((folder / row["head"] / "run.json").read_text())["details"]["cv_score"]
          for row in board["rows"]}
    assert board["chosen"]["cv_scores"] == cv and cv[board["chosen"]["head"]] == max(cv.values())
    assert "validation took no part in the choice" in board["chosen"]["why"]
    assert board["chosen"]["test"]["n_samples"] == 15
    assert "refitted with the same choices on the training and validation rows" in board["chosen"]["why"]
    assert "Chosen:" in result.output
    assert "Test split (the head refitted on training and validation): accuracy" in result.output


def test_mcnemar_is_exact_for_few_disagreements():
    right = np.ones(100, bool)
    other = right.copy()
    other[:6] = False  # 6 discordant pairs, all one way: two-sided exact p = 2 / 2**6
    assert mcnemar(right, other) == {"a_only": 6, "b_only": 0, "p": pytest.approx(2 / 64), "test": "exact"}
    many = np.zeros(100, bool)
    many[:40] = True
    assert mcnemar(many, ~many)["test"] == "chi2"


class ReportParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.images, self.cells, self.links = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag in ("link", "script") or (tag == "a" and "href" in attrs):
            self.links.append(attrs)
        if tag not in ("img", "meta", "br", "link"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "td":
            self.cells.append(data)


def test_report_is_valid_self_contained_html_matching_metrics(compared):
    _, _, folder, board, _ = compared
    parser = ReportParser()
    parser.feed((folder / "report.html").read_text())
    parser.close()
    assert parser.stack == [] and parser.links == []
    assert len(parser.images) >= 4 + 3 and all(src.startswith("data:image/png;base64,") for src in parser.images)
    for row in board["rows"]:
        metrics = json.loads((folder / row["head"] / "metrics.json").read_text())
        assert f"{metrics['accuracy']:.4f} [" in " ".join(parser.cells)
        assert f"{metrics['log_loss']:.4f} [" in " ".join(parser.cells)
    markdown = (folder / "report.md").read_text()
    assert all(f"| {row['head']} |" in markdown for row in board["rows"])
    assert "Pairwise McNemar" in markdown and "Store settings" in markdown and "augmented passes | 1" in markdown


def write_raw_photos(folder: Path) -> list[Path]:
    """Photos of several sizes, none the model's, most much larger, as PNG and JPEG."""
    folder.mkdir()
    paths = []
    for number, (width, height) in enumerate([(50, 80), (300, 200), (641, 480), (1600, 1200)]):
        picture = pattern_image(number % 3, number, max(width, height)).crop((0, 0, width, height))
        for suffix in (".png", ".jpg"):
            paths.append(folder / f"{width}x{height}{suffix}")
            picture.save(paths[-1])
    return paths


def decoded(path: Path, size: int) -> np.ndarray:
    """A photo as the export notes say to give it to the model: upright RGB at its own size, a JPEG
    decoded at the reduced scale (Pillow's ``draft``) that `predict` decodes it at."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.float32)


@pytest.mark.parametrize("head", ["dense", "logreg"])
def test_exported_keras_model_predicts_what_predict_does_on_raw_photos(cli, tmp_path, head):
    """Given the store's own pixels, the model gives `predict`'s probabilities; given raw photos, the
    same labels and every class's probability within 1e-2: Pillow rounds each of its two resize passes to whole
    levels, so the model's antialiased resize misses `load_pixels`' pixels by one level at most (about
    one pixel in eight), which moves these probabilities by under 4e-3 (measured). A plain bilinear
    resize misses by up to 100 levels: probabilities off by up to 1.0, labels changed."""
    out = tmp_path / "export" / "model.keras"
    runs = cli.runs
    if head == "logreg":  # its default signed square root has no Keras layer: fitted without it
        runs = tmp_path / "runs"
        assert cli("head", "--head", "logreg", "--param", "normalize=none", "--cache", cli.cache,
                   "--runs", runs).exit_code == 0
    result = cli("export", "--head", head, "--out", out, "--cache", cli.cache, "--runs", runs)
    assert result.exit_code == 0, result.output
    photos = write_raw_photos(tmp_path / "photos")
    predicted = json.loads(cli("predict", *photos, "--head", head, "--format", "json",
                               "--cache", cli.cache, "--runs", runs).stdout)
    model = keras.saving.load_model(out, safe_mode=True)
    classes = json.loads(out.with_suffix(".classes.json").read_text())
    expected = [[p["probabilities"][name] for name in classes] for p in predicted]
    stored = model.predict(np.stack([load_pixels(p, 32) for p in photos]).astype(np.float32), verbose=0)
    np.testing.assert_allclose(stored, expected, atol=1e-4)  # given the store's own pixels: predict's numbers
    proba = np.concatenate([model.predict(decoded(path, 32)[None], verbose=0) for path in photos])
    assert [classes[i] for i in proba.argmax(axis=1)] == [p["class"] for p in predicted]
    np.testing.assert_allclose(proba, expected, atol=1e-2)


def test_exported_sklearn_head_folder_predicts_what_predict_does(cli, compared, tmp_path):
    _, data, _, _, _ = compared
    out = tmp_path / "svm-export"
    assert cli("export", "--head", "svm", "--out", out, "--cache", cli.cache, "--runs", cli.runs).exit_code == 0
    images = [str(p) for p in sorted((data / "test").rglob("*.*"))[:6]]
    from_store = cli("predict", *images, "--head", "svm", "--cache", cli.cache, "--runs", cli.runs).stdout
    from_export = cli("predict", *images, "--export", out).stdout
    assert from_export == from_store and len(from_store.splitlines()) == 6
    (out / "model" / "model.skops").write_bytes(b"tampered")
    refused = cli("predict", *images, "--export", out)
    assert refused.exit_code == 1 and "do not match the sha256" in refused.output


def test_ensemble_exports_as_a_folder_that_predicts_what_predict_does(cli, compared, tmp_path):
    _, data, _, _, _ = compared
    common = ["--cache", cli.cache, "--runs", cli.runs]
    result = cli("export", "--head", "ensemble", "--out", tmp_path / "e.keras", *common)
    assert result.exit_code == 1 and "exports as a folder" in result.output
    out = tmp_path / "ensemble-export"
    assert cli("export", "--head", "ensemble", "--out", out, *common).exit_code == 0
    images = [str(p) for p in sorted((data / "test").rglob("*.*"))[:4]]
    from_store = cli("predict", *images, "--head", "ensemble", *common).stdout
    assert cli("predict", *images, "--export", out).stdout == from_store and len(from_store.splitlines()) == 4


def test_the_default_sqrt_l2_logreg_refuses_the_keras_export_with_the_way_out(cli, compared, tmp_path):
    runs = tmp_path / "runs"
    common = ["--cache", cli.cache, "--runs", runs]
    assert cli("head", "--head", "logreg", *common).exit_code == 0
    result = cli("export", "--head", "logreg", "--out", tmp_path / "l.keras", *common)
    assert result.exit_code == 1 and "normalize=sqrt_l2" in result.output
    assert "--param normalize=none" in result.output
    assert cli("export", "--head", "logreg", "--out", tmp_path / "folder", *common).exit_code == 0


def test_wrong_export_targets_are_explained(cli, compared, tmp_path):
    result = cli("export", "--head", "dense", "--out", tmp_path / "folder", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 1 and "NAME.keras" in result.output
    result = cli("export", "--head", "svm", "--out", tmp_path / "x.keras", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 1 and "exports as a folder" in result.output


def test_report_is_titled_by_its_data_and_fits_a_phone(compared):
    from datetime import date

    _, data, folder, _, _ = compared
    page = (folder / "report.html").read_text()
    assert f"<h1>Heads on {data.name}, {date.today().isoformat()}</h1>" in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<div class="scroll"><table>' in page  # wide tables scroll instead of widening the page


def test_curves_name_heads_with_identical_probabilities_together():
    """An ensemble that chose one member predicts exactly what it does: one curve, both names."""
    from pipeline.report import _distinct

    rng = np.random.default_rng(0)
    svm = {"proba": rng.dirichlet(np.ones(3), 20), "labels": rng.integers(0, 3, 20)}
    logreg = {"proba": rng.dirichlet(np.ones(3), 20), "labels": svm["labels"]}
    drawn = _distinct({"svm": svm, "logreg": logreg, "ensemble": dict(svm)})
    assert list(drawn) == ["logreg", "svm = ensemble"]
