"""Compact bilinear pooling of block 5's maps: the ``bilinear`` pooling's ``block5_bilinear`` group.

Average and max pooling keep how strongly each channel fired; the bilinear pooling of the maps (a
photo's 512x512 channel co-occurrence, averaged over positions) keeps which channels fire
together, what textures and fine-grained parts are made of. Its 131,328 distinct numbers are too
many to cache, so Random Maclaurin features stand for it: two fixed random +-1 projections of each
position's 512 channels to ``BILINEAR_COLUMNS`` columns, multiplied and averaged over positions,
scaled by 1/sqrt(columns), so that dot products of two photos' columns estimate those of their
co-occurrence matrices (Kar and Karnick 2012; Gao et al., Compact Bilinear Pooling, 2016).

The projections are drawn from a fixed seed, so every engine computes the same columns: Keras in
its graph (``bilinear_layers``, which exports carry), OpenVINO from block5_pool's maps
(``compact_bilinear``). bench/second_order.py measured the group on block5_pool's maps.
"""

from __future__ import annotations

import functools

import numpy as np

from features.spec import BILINEAR_COLUMNS

PROJECTION_SEED = 0
CHANNELS = 512  # block 5's


@functools.cache
def projections() -> tuple[np.ndarray, np.ndarray]:
    """The two fixed (512, BILINEAR_COLUMNS) matrices of random signs."""
    rng = np.random.default_rng(PROJECTION_SEED)
    return tuple(rng.choice(np.float32([-1, 1]), size=(CHANNELS, BILINEAR_COLUMNS)) for _ in range(2))


def compact_bilinear(maps: np.ndarray) -> np.ndarray:
    """(batch, h, w, 512) maps -> (batch, BILINEAR_COLUMNS) float32, one photo at a time (a
    photo's projections at 512 px input are 256 x 8192 floats twice)."""
    first, second = projections()
    scale = np.float32(1 / np.sqrt(BILINEAR_COLUMNS))
    rows = [np.mean((positions @ first) * (positions @ second), axis=0) * scale
            for positions in np.asarray(maps, np.float32).reshape(len(maps), -1, CHANNELS)]
    return np.stack(rows) if rows else np.zeros((0, BILINEAR_COLUMNS), np.float32)


def bilinear_layers(maps):
    """The same columns as Keras layers on block 5's maps (a symbolic tensor), the projections
    as fixed 1x1 convolutions."""
    import keras

    projected = []
    for index, kernel in enumerate(projections()):
        layer = keras.layers.Conv2D(BILINEAR_COLUMNS, 1, use_bias=False, trainable=False,
                                    name=f"bilinear_projection_{index}")
        projected.append(layer(maps))
        layer.set_weights([kernel.reshape(1, 1, CHANNELS, BILINEAR_COLUMNS)])
    product = keras.layers.Multiply(name="bilinear_product")(projected)
    pooled = keras.layers.GlobalAveragePooling2D(name="bilinear_average")(product)
    return keras.layers.Rescaling(1 / np.sqrt(BILINEAR_COLUMNS), name="bilinear_scale")(pooled)
