"""VGG16's input preprocessing as a layer of the model, so that every engine and every export
runs the same graph from raw RGB 0-255 pixels."""

from __future__ import annotations

import numpy as np

IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)  # what vgg16.preprocess_input subtracts


def preprocessing_kernel() -> tuple[np.ndarray, np.ndarray]:
    """``vgg16.preprocess_input`` (RGB->BGR, minus the ImageNet mean) as a 1x1 convolution's
    kernel (HWIO) and bias."""
    swap = np.zeros((1, 1, 3, 3), np.float32)
    for rgb, bgr in ((0, 2), (1, 1), (2, 0)):
        swap[0, 0, rgb, bgr] = 1.0
    return swap, -np.asarray(IMAGENET_BGR_MEAN, np.float32)


def vgg16_preprocessing():
    """The preprocessing as a fixed Keras 1x1 convolution.

    A built-in layer, so that an exported ``.keras`` file loads without this package; float32
    whatever the global policy (bit-identical to ``preprocess_input``: each output is one input
    times 1.0 plus the negated mean, one rounding as in the subtraction).
    """
    import keras

    layer = keras.layers.Conv2D(3, 1, name="vgg16_preprocess", trainable=False, dtype="float32")
    layer.build((None, None, None, 3))
    layer.set_weights(list(preprocessing_kernel()))
    return layer
