"""Default paths and settings, in one place."""

import shlex
from pathlib import Path

CACHE_DIR = Path("cache")
RUNS_DIR = Path("runs")
DEMO_DIR = Path("data") / "digits"

DEMO_IMAGE_SIZE = 32
DEFAULT_WEIGHTS = "auto"


def command_forms(make: str, cli: str, cache: Path | None = None, runs: Path | None = None) -> tuple[str, str]:
    """The ``make`` and ``cli`` commands, each naming the ``cache`` and ``runs`` folders given where
    they are not the defaults (so the command, typed as shown, finds the same folders)."""
    given = {"cache": (cache, CACHE_DIR), "runs": (runs, RUNS_DIR)}
    folders = {name: shlex.quote(str(folder)) for name, (folder, default) in given.items()
               if folder is not None and Path(folder).resolve() != default.resolve()}
    return (" ".join([make, *(f"{name.upper()}={folder}" for name, folder in folders.items())]),
            " ".join([cli, *(f"--{name} {folder}" for name, folder in folders.items())]))
