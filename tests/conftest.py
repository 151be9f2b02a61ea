"""Shared fixtures: small real image folders written to disk, and the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_WEIGHTS = SHARED / "weights" / "vgg16_notop.weights.h5"
CATS_AND_DOGS = SHARED / "data" / "cats_and_dogs_filtered"

if REAL_WEIGHTS.is_file():
    os.environ.setdefault("VGG16_WEIGHTS", str(REAL_WEIGHTS))


def pattern_image(label: int, number: int, size: int = 40) -> Image.Image:
    """A noisy picture whose stripe direction depends on the class, so heads can learn it."""
    rng = np.random.default_rng(1000 * label + number)
    grid = np.arange(size)
    period = 4 + label
    stripes = ((grid // period) % 2).astype(float)
    base = stripes[None, :] if label % 2 else stripes[:, None]
    picture = np.broadcast_to(base, (size, size)) * 180 + rng.uniform(0, 75, (size, size))
    rgb = np.stack([picture, np.roll(picture, label, axis=0), picture[::-1]], axis=-1)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def write_images(root: Path, classes: dict[str, int], start: int = 0, label_offset: int = 0) -> list[Path]:
    """Write ``count`` images per class under ``root/<class>/``, alternating PNG and JPEG."""
    written = []
    for label, (name, count) in enumerate(classes.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(start, start + count):
            suffix = ".png" if number % 2 else ".JPG"
            path = folder / f"img_{number:03d}{suffix}"
            pattern_image(label + label_offset, number).save(path)
            written.append(path)
    return written


def write_split_folder(root: Path, train_per_class: int, validation_per_class: int) -> Path:
    """root/{train,validation}/{cats,dogs}/*, validation images numbered from 100."""
    write_images(root / "train", {"cats": train_per_class, "dogs": train_per_class})
    write_images(root / "validation", {"cats": validation_per_class, "dogs": validation_per_class}, start=100)
    return root


def write_three_classes(root: Path, **per_split: int) -> Path:
    """root/<split>/{alpha,beta,gamma}/*, ``per_split[split]`` images a class, each split's numbered
    from its own hundred (train 0, validation 100, test 200) so that no two images are alike."""
    for number, (split, count) in enumerate(per_split.items()):
        write_images(root / split, {"alpha": count, "beta": count, "gamma": count}, start=100 * number)
    return root


@pytest.fixture
def flat_folder(tmp_path: Path) -> Path:
    """root/<class>/*: three classes, 12 images each."""
    root = tmp_path / "photos"
    write_images(root, {"alpha": 12, "beta": 12, "gamma": 12})
    return root


@pytest.fixture
def split_folder(tmp_path: Path) -> Path:
    """root/{train,validation}/<class>/*: two classes."""
    return write_split_folder(tmp_path / "split", 10, 4)


def make_cli(folder: Path):
    """Invoke `python -m pipeline` in-process; ``.cache`` and ``.runs`` lie under ``folder``."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    invoke.cache = folder / "cache"
    invoke.runs = folder / "runs"
    return invoke


@pytest.fixture
def cli(tmp_path):
    return make_cli(tmp_path)


# A `cli_process` prelude that prints, on exit, whether the command imported TensorFlow.
REPORT_TENSORFLOW = ("import atexit; atexit.register(lambda: print('tensorflow loaded:', 'tensorflow' in sys.modules, "
                     "file=sys.stderr))")


def cli_process(*args, prelude: str = "pass", timeout: int = 300) -> subprocess.CompletedProcess:
    """The CLI in a real process, after the Python statements ``prelude`` (e.g. one that hides a
    module, or reports on exit what was imported); output captured as text."""
    program = f"import sys; {prelude}; from pipeline.cli import app; sys.argv[0] = 'pipeline'; app()"
    return subprocess.run([sys.executable, "-c", program, *map(str, args)], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=timeout)


def extract_args(data: Path, cache: Path, *extra: str) -> list[str]:
    """`features` arguments for a fast test extraction: random weights, 32 px, fp32 (pinned, so
    that what a test checks does not depend on the CPU; a later --precision in ``extra`` wins)."""
    return ["features", "--data", str(data), "--cache", str(cache), "--weights", "none",
            "--image-size", "32", "--precision", "fp32", *extra]


# `compare` takes no head parameters, so where a test runs it in this process and its point is not
# the dense head's training, the dense head's defaults are shortened to one network instead (it still
# early-stops on its grouped holdout and refits on every row; the ensemble still refits it per fold).
QUICK_DENSE = {"epochs": 6, "patience": 2, "networks": 1}
# The same for a command in its own process: a `cli_process` prelude.
QUICK_DENSE_PRELUDE = f"from heads import DenseHead; DenseHead.__init__.__kwdefaults__.update({QUICK_DENSE!r})"


@contextmanager
def shortened_defaults(head_class, params: dict):
    """While open, ``head_class()`` means ``head_class(**params)`` (and says so in get_params), so
    that `compare`, which takes no head parameters, fits the head with them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(head_class.__init__, "__kwdefaults__", {**head_class.__init__.__kwdefaults__, **params})
        yield


def quick_dense_defaults():
    """While open, ``DenseHead()`` means ``DenseHead(**QUICK_DENSE)``."""
    from heads import DenseHead

    return shortened_defaults(DenseHead, QUICK_DENSE)


# The files that run longest (pytest --durations on a 2-core AVX2 EPYC: 75-150 s each), started
# first: `make test` hands whole files to its workers, and one of these started last would leave
# the other worker idle for its length.
LONGEST_FILES = ("test_user_flow.py", "test_estimator_checks.py", "test_real_photos.py", "test_cli.py",
                 "test_crash_safety.py")


def pytest_collection_modifyitems(items):
    def longest_first(item):
        name = item.path.name
        return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=longest_first)  # stable: the order within a file, and of the other files, is kept
