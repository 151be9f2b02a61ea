"""Default paths and settings, in one place."""

from pathlib import Path

CACHE_DIR = Path("cache")
RUNS_DIR = Path("runs")
DEMO_DIR = Path("data") / "digits"
LATEST_FILE = "LATEST"  # inside the cache: key of the last store `features` finished

DEFAULT_IMAGE_SIZE = 224
DEMO_IMAGE_SIZE = 32
DEFAULT_WEIGHTS = "auto"

# Bumped whenever the way features are computed changes, so old stores are not reused.
EXTRACTION_VERSION = 1
BACKBONE = "keras.applications.VGG16(include_top=False)"
PREPROCESSING = "pillow draft+exif upright+RGB+bilinear resize; vgg16.preprocess_input"
