"""Where the VGG16 base's weights come from, and what identifies them (no TensorFlow import)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from features.errors import FeatureError

IMAGENET_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
IMAGENET_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                      + IMAGENET_NOTOP_FILE)
WEIGHTS_ENV = "VGG16_WEIGHTS"


@dataclass(frozen=True)
class Weights:
    """Resolved weights: a file to load (None for random) and what identifies them."""

    path: str | None
    identity: str  # "imagenet", "sha256:<hex>" or "random"
    warning: str | None = None


RANDOM_WEIGHTS = Weights(path=None, identity="random")


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_imagenet() -> str:
    """Keras' ImageNet notop weights file, downloaded once into ~/.keras/models; Keras' messages
    ("Downloading data from ...", its progress bar) go to stderr, keeping stdout for results."""
    import keras

    with contextlib.redirect_stdout(sys.stderr):
        return keras.utils.get_file(
            IMAGENET_NOTOP_FILE, IMAGENET_NOTOP_URL, cache_subdir="models", file_hash=IMAGENET_NOTOP_MD5
        )


def _weights_file(path: str) -> Weights:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise FeatureError(f"Weights file not found or unreadable: {path}. Pass `weights` as the path "
                           "to a VGG16 include_top=False weights file, or imagenet.")
    # recorded absolute, so that predict and export find it from any folder
    return Weights(path=os.path.abspath(path), identity=f"sha256:{file_sha256(path)}")


def resolve_weights(spec: str, random_fallback: bool = False) -> Weights:
    """Turn ``auto|imagenet|none|PATH`` into weights to load.

    ``auto`` uses ``$VGG16_WEIGHTS`` when set, else the ImageNet download. Where that
    fails, ``random_fallback`` (the built-in demo only) gives random weights with a
    warning naming the cause; otherwise it is an error naming the ways to real weights.
    ``none`` is the explicit way to ask for random weights.
    """
    if spec == "none":
        return Weights(path=None, identity="random",
                       warning="--weights none: random VGG16 weights; features carry little meaning.")
    if spec == "auto" and os.environ.get(WEIGHTS_ENV):
        return _weights_file(os.path.expanduser(os.environ[WEIGHTS_ENV]))
    if spec in ("auto", "imagenet"):
        try:
            return Weights(path=_download_imagenet(), identity="imagenet")
        except Exception as error:  # Keras raises a bare Exception on fetch failure
            cause = str(error).splitlines()[0][:200]
            if random_fallback and spec == "auto":
                return Weights(path=None, identity="random", warning=(
                    f"ImageNet weights unavailable ({cause}); using RANDOM weights. Set "
                    f"{WEIGHTS_ENV} or pass `weights` PATH for real features."))
            raise FeatureError(
                f"No VGG16 ImageNet weights: the download failed ({cause}). Offline? Set "
                f"{WEIGHTS_ENV}=PATH or pass `weights` PATH (WEIGHTS=PATH with make) to a VGG16 "
                "include_top=False weights file, or `weights` none for random features."
            ) from None
    return _weights_file(os.path.expanduser(spec))
