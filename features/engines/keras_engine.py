"""The Keras engine: the backbone model run by TensorFlow, in fp32 or bf16."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from features.backbone import build_backbone
from features.spec import BackboneSpec


class KerasEngine:
    """The spec's backbone as one traced TensorFlow function; features come out float32."""

    def __init__(self, spec: BackboneSpec):
        self.spec = spec
        self.batch_size = spec.batch_size
        self.model = build_backbone(spec)
        self._forward = tf.function(lambda x: tf.cast(self.model(x, training=False), tf.float32),
                                    reduce_retracing=True)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Shape (batch, size, size, 3) float32 0-255 in; (batch, *feature_shape) float32 out."""
        return self._forward(tf.convert_to_tensor(images, tf.float32)).numpy()

    def describe(self) -> str:
        return f"keras {self.spec.precision}"
