"""What runs the VGG16 base: one ``Engine`` protocol and ``open_engine``, which picks the
implementation for a spec. Keras runs fp32 and bf16; OpenVINO runs fp32, bf16 and int8.

A new engine (ONNX Runtime, a GPU path) is one module here and one branch in ``open_engine``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from features.errors import FeatureError
from features.spec import BackboneSpec

INT8_DIR = "int8"  # inside a store or an export folder: the calibrated int8 model
INT8_MODEL_FILE = "vgg16-int8.xml"


class Engine(Protocol):
    """Float32 RGB 0-255 batches of shape (batch, size, size, 3) in, float32 features out."""

    batch_size: int

    def __call__(self, images: np.ndarray) -> np.ndarray: ...

    def describe(self) -> str: ...


def int8_model_path(folder: Path | str) -> Path:
    """Where a store (or an export) keeps its calibrated int8 model."""
    return Path(folder) / INT8_DIR / INT8_MODEL_FILE


def open_engine(spec: BackboneSpec, int8_folder: Path | str | None = None) -> Engine:
    """The engine for ``spec``. int8 loads the calibrated model that ``int8_folder`` (a store
    or an export) holds; calibrating one is ``features.calibration``'s job."""
    if spec.engine == "keras":
        from features.engines.keras_engine import KerasEngine

        return KerasEngine(spec)
    from features.engines.openvino_engine import OpenVinoEngine, load_openvino_model, to_openvino

    if spec.precision != "int8":
        return OpenVinoEngine(to_openvino(spec, spec.batch_size), spec)
    model_file = int8_model_path(int8_folder) if int8_folder is not None else None
    if model_file is None or not model_file.is_file():
        raise FeatureError(f"The calibrated int8 model {model_file} is missing. Extract the store "
                           "again with int8 to calibrate it.")
    return OpenVinoEngine(load_openvino_model(model_file), spec, pool_maps=True)


def view_features(engine: Engine, images: np.ndarray, views: int) -> np.ndarray:
    """Features of ``images``, or (views=2) the average of the images' and their horizontal
    mirrors' features: what every store, prediction and transformer computes."""
    features = engine(images)
    if views == 2:
        features = (features + engine(np.ascontiguousarray(images[:, :, ::-1]))) / 2
    return features
