"""What runs the VGG16 base: Keras (fp32, bf16) or OpenVINO (fp32, bf16, int8).

Every engine is a callable: float32 RGB 0-255 batches of shape (batch, size, size, 3)
in, float32 features out. OpenVINO is the optional ``fast`` extra; it is imported only
when asked for, and its absence is a one-line error naming the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from keras.applications import vgg16

from features.backbone import INSTALL_ENGINE, FeatureExtractor, Weights, build_backbone, resolve_precision
from features.errors import FeatureError

ENGINES = ("auto", "keras", "openvino")
INSTALL_FAST = INSTALL_ENGINE
# OpenVINO's CPU plugin: arithmetic of the ops that are not quantized, fixed rather than
# left to the plugin's default (which is bf16 on CPUs with AMX).
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def openvino_installed() -> bool:
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str, precision: str) -> str:
    """``keras`` or ``openvino`` for an already resolved ``precision``.

    ``auto`` is Keras for fp32 and bf16 (no extra needed, as fast here) and OpenVINO
    for int8, which only OpenVINO runs.
    """
    if engine not in ENGINES:
        raise FeatureError(f"--engine must be one of {', '.join(ENGINES)}. Received: {engine}")
    if engine == "auto":
        engine = "openvino" if precision == "int8" else "keras"
    if engine == "keras" and precision == "int8":
        raise FeatureError("--precision int8 runs on OpenVINO only: pass --engine openvino (or auto).")
    if engine == "openvino" and not openvino_installed():
        reason = "int8 needs" if precision == "int8" else "--engine openvino needs"
        raise FeatureError(f"{reason} OpenVINO and NNCF, which are not installed: {INSTALL_FAST}.")
    return engine


def to_openvino(image_size: int, pooling: str, weights: Weights, batch_size: int, seed: int = 0):
    """The float32 VGG16 base with its preprocessing, as an OpenVINO model of fixed batch size
    (calibration needs one; ``OpenVinoEngine`` frees it).

    TensorFlow's copy of the model is released before returning (Keras' session cleared),
    so only OpenVINO's copy stays in memory.
    """
    import gc

    import keras
    import openvino as ov

    model = build_backbone(image_size, pooling, weights, seed, "fp32")
    forward = tf.function(lambda x: model(vgg16.preprocess_input(x), training=False))
    signature = tf.TensorSpec((batch_size, image_size, image_size, 3), tf.float32)
    converted = ov.convert_model(forward.get_concrete_function(signature))
    del model, forward
    keras.backend.clear_session()
    gc.collect()
    return converted


def pool(features: np.ndarray, pooling: str) -> np.ndarray:
    """(batch, h, w, 512) maps pooled over h and w as Keras' global pooling does; pooled
    features (batch, 512), and ``pooling="none"``, pass through."""
    if features.ndim != 4 or pooling == "none":
        return features
    return features.max(axis=(1, 2)) if pooling == "max" else features.mean(axis=(1, 2), dtype=np.float32)


class OpenVinoEngine:
    """An OpenVINO model compiled for the CPU with a free batch size, so a shard's short last
    batch costs only its own images (measured here: the same features and speed as the
    fixed-size model it came from).

    ``pooling`` pools a model that outputs the feature map (the int8 base is quantized
    without pooling, so that one calibrated model serves every pooling).
    """

    def __init__(self, model, precision: str, pooling: str = "none"):
        import openvino as ov

        model = model.clone()
        model.reshape([-1, *model.inputs[0].get_partial_shape().to_shape()[1:]])
        self.pooling = pooling
        self.compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision]})

    def __call__(self, images: np.ndarray) -> np.ndarray:
        features = np.asarray(self.compiled(np.ascontiguousarray(images, np.float32))[0], np.float32)
        return pool(features, self.pooling)


def load_openvino_model(path: Path):
    import openvino as ov

    return ov.Core().read_model(str(path))


def build_engine(image_size: int, pooling: str, weights: Weights, seed: int, precision: str,
                 engine: str, batch_size: int, int8_model: Path | None = None):
    """The callable that turns image batches into features for these settings.

    ``int8_model`` is the calibrated model file (see ``features.calibration``), needed for int8.
    """
    precision = resolve_precision(precision)
    engine = resolve_engine(engine, precision)
    if engine == "keras":
        return FeatureExtractor(build_backbone(image_size, pooling, weights, seed, precision))
    if precision == "int8":
        if int8_model is None or not Path(int8_model).is_file():
            raise FeatureError(f"The calibrated int8 model {int8_model} is missing. Rerun `features` "
                               "with --precision int8 to calibrate it again.")
        return OpenVinoEngine(load_openvino_model(int8_model), precision, pooling)
    return OpenVinoEngine(to_openvino(image_size, pooling, weights, batch_size, seed), precision)
