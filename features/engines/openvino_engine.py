"""The OpenVINO engine: fp32, bf16 and the calibrated int8 model.

OpenVINO is imported only here, so its absence costs nothing until it is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.bilinear import compact_bilinear
from features.spec import BackboneSpec

# OpenVINO's CPU plugin: arithmetic of the ops that are not quantized, fixed rather than
# left to the plugin's default (which is bf16 on CPUs with AMX).
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def to_openvino(spec: BackboneSpec, batch_size: int, pooling: str | None = None):
    """The float32 backbone (preprocessing included) as an OpenVINO model of fixed batch size
    (calibration needs one; ``OpenVinoEngine`` frees it), built from the weights file without
    TensorFlow where the file allows (``vgg16_graph``)."""
    from features.engines.vgg16_graph import conv_weights, vgg16_graph

    return vgg16_graph(conv_weights(spec), batch_size, spec.image_size, pooling or spec.pooling)


def load_openvino_model(path: Path):
    import openvino as ov

    return ov.Core().read_model(str(path))


class OpenVinoEngine:
    """An OpenVINO model compiled for the CPU with a free batch size, so a shard's short last
    batch costs only its own images (measured: the same features and speed as the
    fixed-size model it came from).

    ``pool_maps``: the model outputs maps, which the engine pools as ``spec.pooling`` asks
    (``vgg16_graph.pooled_model``; the int8 base is quantized without pooling, with the maps of
    blocks 3, 4 and 5 out, so that one calibrated model serves every pooling).
    """

    def __init__(self, model, spec: BackboneSpec, pool_maps: bool = False):
        import openvino as ov

        from features.engines.vgg16_graph import pooled_model

        model = model.clone()  # the caller's model keeps its shape and outputs
        if pool_maps:
            model = pooled_model(model, spec.pooling)
        model.reshape([-1, *model.inputs[0].get_partial_shape().to_shape()[1:]])
        self.spec = spec
        self.batch_size = spec.batch_size
        self.compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": OPENVINO_HINTS[spec.precision]})

    def __call__(self, images: np.ndarray) -> np.ndarray:
        results = self.compiled(np.ascontiguousarray(images, np.float32))
        features, *maps = (np.asarray(results[output], np.float32) for output in self.compiled.outputs)
        return np.concatenate([features, compact_bilinear(maps[0])], axis=1) if maps else features

    def describe(self) -> str:
        return f"openvino {self.spec.precision}"
