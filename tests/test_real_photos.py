"""With the real ImageNet weights: every head separates cats from dogs on real photos."""

import json

import pytest

from tests.conftest import CATS_AND_DOGS, REAL_WEIGHTS

pytestmark = pytest.mark.skipif(
    not (REAL_WEIGHTS.is_file() and CATS_AND_DOGS.is_dir()),
    reason=f"needs the real VGG16 weights at {REAL_WEIGHTS} and photos at {CATS_AND_DOGS}",
)


def link_photos(target, split, per_class):
    for animal in ("cats", "dogs"):
        folder = target / split / animal
        folder.mkdir(parents=True)
        for source in sorted((CATS_AND_DOGS / split / animal).iterdir())[:per_class]:
            (folder / source.name).symlink_to(source)


def test_each_head_reaches_90_percent_on_real_photos(cli, tmp_path):
    data = tmp_path / "cats_and_dogs"
    link_photos(data, "train", 100)
    link_photos(data, "validation", 100)
    result = cli("features", "--data", data, "--weights", str(REAL_WEIGHTS), "--image-size", "150",
                 "--cache", cli.cache)
    assert result.exit_code == 0, result.output
    result = cli("compare", "--cache", cli.cache, "--runs", cli.runs)
    assert result.exit_code == 0, result.output
    (board,) = list(cli.runs.glob("*/leaderboard.json"))
    rows = json.loads(board.read_text())["rows"]
    assert {row["head"]: row["accuracy"] >= 0.90 for row in rows} == {"dense": True, "logreg": True, "svm": True}, rows
