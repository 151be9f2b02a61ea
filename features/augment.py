"""Seeded random augmentation of image batches with Keras preprocessing layers."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each random transform (Keras layer factors); 0 turns one off."""

    flip: str = "horizontal"
    rotation: float = 0.1
    zoom: float = 0.1
    translation: float = 0.1
    contrast: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def batch_seed(*parts: int) -> int:
    """A 31-bit seed derived from integers such as (seed, pass, shard, batch)."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Augmenter:
    """Applies the configured Keras random layers to a batch of 0-255 RGB images.

    Each call takes an explicit integer seed, so the same batch with the same seed
    gives the same pixels in any process, whatever ran before.
    """

    def __init__(self, config: AugmentConfig):
        import keras

        layers = keras.layers
        candidates = [
            (config.flip, lambda: layers.RandomFlip(config.flip)),
            (config.rotation, lambda: layers.RandomRotation(config.rotation, fill_mode="reflect")),
            (config.zoom, lambda: layers.RandomZoom(config.zoom, fill_mode="reflect")),
            (config.translation, lambda: layers.RandomTranslation(
                config.translation, config.translation, fill_mode="reflect")),
            (config.contrast, lambda: layers.RandomContrast(config.contrast, value_range=(0, 255))),
        ]
        self.layers = [make() for setting, make in candidates if setting]

    def __call__(self, images: np.ndarray, seed: int) -> np.ndarray:
        """Shape (batch, height, width, 3) float32 in, same shape and range out."""
        import keras

        x = keras.ops.convert_to_tensor(images, dtype="float32")
        for position, layer in enumerate(self.layers):
            transformation = layer.get_random_transformation(
                x, training=True, seed=batch_seed(seed, position)
            )
            x = layer.transform_images(x, transformation, training=True)
        return keras.ops.convert_to_numpy(keras.ops.clip(x, 0.0, 255.0))
