"""Default paths and settings, in one place."""

from pathlib import Path

CACHE_DIR = Path("cache")
RUNS_DIR = Path("runs")
DEMO_DIR = Path("data") / "digits"

DEMO_IMAGE_SIZE = 32
DEFAULT_WEIGHTS = "auto"
