"""The frozen VGG16 convolutional base and where its weights come from."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras.applications import vgg16

from features.errors import FeatureError

POOLINGS = ("none", "avg", "max")
PRECISIONS = ("fp32", "bf16", "int8", "auto")
KERAS_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products in hardware
INSTALL_ENGINE = "pip install '.[fast]' (or pass FAST=1 to make)"
MIN_IMAGE_SIZE = 32
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


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_imagenet() -> str:
    """Keras' ImageNet notop weights file, downloaded once into ~/.keras/models."""
    return keras.utils.get_file(
        IMAGENET_NOTOP_FILE, IMAGENET_NOTOP_URL, cache_subdir="models", file_hash=IMAGENET_NOTOP_MD5
    )


def _weights_file(path: str) -> Weights:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise FeatureError(
            f"Weights file not found or unreadable: {path}. Pass --weights with the path to a "
            "VGG16 include_top=False weights file, or --weights imagenet."
        )
    return Weights(path=path, identity=f"sha256:{file_sha256(path)}")


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
                    f"{WEIGHTS_ENV} or pass --weights PATH for real features."))
            raise FeatureError(
                f"No VGG16 ImageNet weights: the download failed ({cause}). Offline? Set "
                f"{WEIGHTS_ENV}=PATH or pass --weights PATH (WEIGHTS=PATH with make) to a VGG16 "
                "include_top=False weights file, or --weights none for random features."
            ) from None
    return _weights_file(os.path.expanduser(spec))


def native_precision(cpu_flags: set[str]) -> str:
    """bf16 where the CPU multiplies bfloat16 natively (AVX512_BF16 or AMX), else fp32."""
    return "bf16" if cpu_flags & set(BF16_CPU_FLAGS) else "fp32"


def _named(flags: set[str]) -> str:
    return " and ".join(sorted(flag.upper() for flag in flags))


def choose_precision(cpu_flags: set[str], engine_installed: bool) -> tuple[str, str]:
    """What ``--precision auto`` runs on a CPU with ``cpu_flags``, and why, in words.

    The fastest arithmetic the CPU runs natively that keeps the accuracy guard: int8 where
    it has int8 dot products (AVX512_VNNI, AVX_VNNI or AMX) and the OpenVINO engine is
    installed (measured 3.9x the recipe on a Zen 4, against bf16's 2.0x); else bf16 where
    it multiplies bfloat16 natively; else fp32.
    """
    int8_flags, bf16_flags = cpu_flags & set(INT8_CPU_FLAGS), cpu_flags & set(BF16_CPU_FLAGS)
    if int8_flags and engine_installed:
        return "int8", f"the CPU has {_named(int8_flags)} and OpenVINO is installed"
    missing = (f"; int8 would be faster (the CPU has {_named(int8_flags)}) but needs OpenVINO and NNCF, "
               f"which are not installed: {INSTALL_ENGINE}") if int8_flags else ""
    if bf16_flags:
        return "bf16", f"the CPU multiplies bfloat16 natively ({_named(bf16_flags)}){missing}"
    if missing:
        return "fp32", f"the CPU has no native bfloat16{missing}"
    return "fp32", ("the CPU has neither int8 dot products (AVX512_VNNI, AVX_VNNI, AMX) nor native "
                    "bfloat16 (AVX512_BF16, AMX)")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux: no flags known, so no native bf16 is assumed
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def engine_installed() -> bool:
    """Whether OpenVINO and NNCF, which int8 needs, can be imported (without importing them)."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(name) is not None for name in ("openvino", "nncf"))
    except (ImportError, ValueError):  # a module set to None in sys.modules: not importable
        return False


def explain_precision(precision: str) -> tuple[str, str | None]:
    """(``fp32``, ``bf16`` or ``int8``; why ``auto`` chose it, None when it was asked for)."""
    if precision not in PRECISIONS:
        raise FeatureError(f"--precision must be one of {', '.join(PRECISIONS)}. Received: {precision}")
    if precision != "auto":
        return precision, None
    return choose_precision(cpu_flags(), engine_installed())


def resolve_precision(precision: str) -> str:
    """``fp32``, ``bf16`` or ``int8``; ``auto`` becomes what ``choose_precision`` picks here."""
    return explain_precision(precision)[0]


def feature_shape(image_size: int, pooling: str) -> tuple[int, ...]:
    """Shape of one image's features: (512,) pooled, (s, s, 512) with no pooling."""
    if pooling != "none":
        return (512,)
    side = image_size // 32
    return (side, side, 512)


def build_backbone(image_size: int, pooling: str, weights: Weights, seed: int = 0,
                   precision: str = "fp32") -> keras.Model:
    """VGG16 without its top, frozen, for ``image_size`` square RGB input.

    ``precision="bf16"`` builds it under Keras' ``mixed_bfloat16`` policy (bfloat16
    arithmetic, float32 weights), about twice as fast on CPUs with native bf16.
    """
    if image_size < MIN_IMAGE_SIZE:
        raise FeatureError(f"--image-size must be at least {MIN_IMAGE_SIZE}. Received: {image_size}")
    if pooling not in POOLINGS:
        raise FeatureError(f"--pooling must be one of {', '.join(POOLINGS)}. Received: {pooling}")
    precision = resolve_precision(precision)
    if precision not in KERAS_POLICIES:
        raise FeatureError(f"Keras runs the VGG16 base in {' or '.join(KERAS_POLICIES)}, not {precision}.")
    keras.utils.set_random_seed(seed)  # random weights are reproducible
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(KERAS_POLICIES[precision])
    try:
        model = vgg16.VGG16(
            include_top=False,
            weights=weights.path,
            input_shape=(image_size, image_size, 3),
            pooling=None if pooling == "none" else pooling,
        )
    except (ValueError, OSError) as error:
        raise FeatureError(
            f"Could not load VGG16 weights from {weights.path}: {str(error).splitlines()[0][:200]}. "
            "Pass --weights with a VGG16 include_top=False weights file."
        ) from None
    finally:
        keras.config.set_dtype_policy(previous_policy)  # later models (heads) stay float32
    model.trainable = False
    return model


class FeatureExtractor:
    """RGB 0-255 batches in, float32 VGG16 features out, through ``vgg16.preprocess_input``."""

    def __init__(self, model: keras.Model):
        self.model = model
        self._forward = tf.function(
            lambda x: tf.cast(model(vgg16.preprocess_input(x), training=False), tf.float32),
            reduce_retracing=True,
        )

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Shape (batch, size, size, 3) float32 0-255 in; (batch, *feature_shape) float32 out."""
        return self._forward(tf.convert_to_tensor(images, tf.float32)).numpy()
