"""Start-up: a command loads only what it needs. TensorFlow (seconds to import) is loaded for
the Keras engine, augmentation, the dense head and calibration on random weights, never to write
an int8 store whose calibrated model is cached (nor to calibrate from a weights file:
tests/test_vgg16_graph.py), and its C++ start-up lines never reach the user."""

import pytest

from features.spec import engine_installed
from tests.conftest import REPORT_TENSORFLOW, cli_process, extract_args


def features(*args):
    return cli_process(*args, prelude=REPORT_TENSORFLOW)


@pytest.mark.skipif(not engine_installed(), reason="the fast extra (openvino, nncf) is not installed")
def test_an_int8_store_with_a_cached_model_runs_without_tensorflow(split_folder, tmp_path):
    cache = tmp_path / "cache"
    first = features(*extract_args(split_folder, cache, "--precision", "int8", "--calibration-images", "8"))
    assert first.returncode == 0, first.stderr
    assert "Calibrating int8" in first.stderr and "tensorflow loaded: True" in first.stderr
    assert "cuda" not in first.stderr.lower() and "oneDNN" not in first.stderr  # muted start-up lines
    second = features(*extract_args(split_folder, cache, "--precision", "int8", "--calibration-images", "8",
                                    "--pooling", "max"))
    assert second.returncode == 0, second.stderr
    assert "reusing the model calibrated" in second.stderr and "tensorflow loaded: False" in second.stderr


def test_the_keras_engine_loads_tensorflow_quietly(split_folder, tmp_path):
    result = features(*extract_args(split_folder, tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert "tensorflow loaded: True" in result.stderr
    assert "cuda" not in result.stderr.lower() and "oneDNN" not in result.stderr


def copy_of_the_packages(folder):
    """The project's three packages copied into ``folder`` (their source only)."""
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for name in ("features", "heads", "pipeline"):
        shutil.copytree(repo / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.mark.parametrize("case", ["overwritten", "shadowed"])
def test_a_foreign_features_package_is_named_in_one_line(tmp_path, case):
    """As after `pip install features` (its __init__.py written over ours), or with a features.py in
    the working folder ahead of ours on sys.path."""
    import subprocess
    import sys

    home = copy_of_the_packages(tmp_path / "site")
    if case == "overwritten":
        (home / "features" / "__init__.py").write_text("# another project's features package\n")
        cwd = home
    else:
        cwd = tmp_path / "work"
        cwd.mkdir()
        (cwd / "features.py").write_text("# the user's own script\n")
    result = subprocess.run([sys.executable, "-c", f"import sys; sys.path[1:1] = [{str(home)!r}]; "
                             "import runpy; runpy.run_module('pipeline', run_name='__main__')", "--version"],
                            cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert ("overwrote it" if case == "overwritten" else "features.py") in result.stderr
