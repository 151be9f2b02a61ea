"""The VGG16 base as an OpenVINO graph built directly from its weights, without TensorFlow.

Importing TensorFlow, building the Keras model and converting it took about 6 s of every
first int8 store (the calibration step); the base is thirteen 3x3 convolutions and five max
pools, so it is written here op for op from the weights file instead. The graph is the Keras
backbone's (``features.backbone.build_backbone``): raw RGB 0-255 in (NHWC), the VGG16
preprocessing as a 1x1 convolution, the base, the pooling; tests check the two agree.
"""

from __future__ import annotations

import re

import numpy as np

from features.preprocessing import preprocessing_kernel
from features.spec import BLOCK_CHANNELS, GROUPED_POOLINGS, MAP_STRIDES, BackboneSpec, Pooling

# (input channels, output channels) of each 3x3 convolution, and after which ones a 2x2 max pool comes
CONVOLUTIONS = ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512))
POOL_AFTER = frozenset({1, 3, 6, 9, 12})
BLOCK4_CONVOLUTIONS = 10  # the convolutions before block4_pool
# Not a user's pooling: the maps of blocks 3, 4 and 5 (blockN_pool) as three outputs, what the int8
# base is quantized with, so that one calibrated model serves every pooling (``pooled_model``).
BLOCK_MAPS = "block_maps"

ConvWeights = list[tuple[np.ndarray, np.ndarray]]  # (kernel HWIO, bias) per convolution


def _is_vgg16(pairs: ConvWeights) -> bool:
    return len(pairs) == len(CONVOLUTIONS) and all(
        kernel.shape == (3, 3, cin, cout) and bias.shape == (cout,)
        for (kernel, bias), (cin, cout) in zip(pairs, CONVOLUTIONS))


def _keras3_pairs(handle) -> ConvWeights:
    """A Keras 3 ``.weights.h5``: ``layers/conv2d[_N]/vars/{0,1}``, in the layers' order."""
    layers = handle.get("layers")
    if layers is None:
        return []
    names = [name for name in layers if re.fullmatch(r"conv2d(_\d+)?", name)]
    names.sort(key=lambda name: int(name.rpartition("_")[2]) if "_" in name else 0)
    return [(layers[name]["vars"]["0"][()], layers[name]["vars"]["1"][()]) for name in names]


def _legacy_pairs(handle) -> ConvWeights:
    """A Keras 2 HDF5 weights file (the ImageNet download): ``layer_names`` and ``weight_names`` attributes."""
    pairs = []
    for layer in handle.attrs.get("layer_names", []):
        group = handle[layer.decode() if isinstance(layer, bytes) else layer]
        names = [name.decode() if isinstance(name, bytes) else name for name in group.attrs.get("weight_names", [])]
        if len(names) == 2:
            pairs.append((group[names[0]][()], group[names[1]][()]))
    return pairs


def read_conv_weights(path: str) -> ConvWeights | None:
    """The thirteen (kernel, bias) pairs of a VGG16 notop weights file, or None where the file
    is not laid out as Keras writes one (Keras then reads it, and says what is wrong)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            for read in (_keras3_pairs, _legacy_pairs):
                pairs = read(handle)
                if _is_vgg16(pairs):
                    return [(np.asarray(k, np.float32), np.asarray(b, np.float32)) for k, b in pairs]
    except (OSError, KeyError, ValueError):  # not HDF5, or not the groups Keras writes
        pass
    return None


def keras_conv_weights(spec: BackboneSpec) -> ConvWeights:
    """The convolutions' weights as Keras loads them (random weights, or a file laid out otherwise)."""
    import keras

    from features.backbone import build_backbone

    model = build_backbone(spec, precision="fp32", pooling=Pooling.NONE.value)
    base = model.get_layer("vgg16")
    pairs = [tuple(layer.get_weights()) for layer in base.layers if isinstance(layer, keras.layers.Conv2D)]
    keras.backend.clear_session()
    return pairs


def conv_weights(spec: BackboneSpec) -> ConvWeights:
    """The spec's VGG16 weights, read from the file without TensorFlow where the file allows."""
    pairs = read_conv_weights(spec.weights.path) if spec.weights.path else None
    return pairs if pairs is not None else keras_conv_weights(spec)


def vgg16_graph(pairs: ConvWeights, batch_size: int, image_size: int, pooling: str):
    """An OpenVINO model: (batch, size, size, 3) float32 RGB 0-255 in; out, the maps of blocks 3, 4
    and 5 (batch, h, w, c), three outputs, for ``BLOCK_MAPS``, else their ``pooling``
    (``pooled_model``)."""
    import openvino as ov
    import openvino.opset13 as ops

    images = ops.parameter([batch_size, image_size, image_size, 3], np.float32, name="rgb_0_255")
    x = ops.transpose(images, ops.constant(np.array([0, 3, 1, 2], np.int64)))  # NCHW inside
    kernel, bias = preprocessing_kernel()
    x = _convolution(ops, x, kernel, bias, padding=0)
    if pooling == Pooling.BLOCK4_POOL:  # block 5 is left to the finetune head
        pairs = pairs[:BLOCK4_CONVOLUTIONS]
    pools = []  # each block's output, after its max pool
    for index, (kernel, bias) in enumerate(pairs):
        x = ops.relu(_convolution(ops, x, kernel, bias, padding=1))
        if index in POOL_AFTER:
            x = ops.max_pool(x, strides=[2, 2], dilations=[1, 1], pads_begin=[0, 0], pads_end=[0, 0],
                             kernel_shape=[2, 2], rounding_type="floor").output(0)
            pools.append(x)
    channels_last = ops.constant(np.array([0, 2, 3, 1], np.int64))
    maps = ov.Model([ops.transpose(block, channels_last) for block in pools[-len(BLOCK_CHANNELS):]],
                    [images], "vgg16_features")  # blocks 3, 4 and 5 (2, 3 and 4 for block4_pool)
    return maps if pooling == BLOCK_MAPS else pooled_model(maps, pooling)


def pooled_model(model, pooling: str):
    """A maps model (blocks 3, 4 and 5's maps out, or block 5's alone) with ``pooling`` done inside
    it: one output of pooled columns (``blocks``: each block's average then max; ``avg``, ``max``,
    ``avgmax``: the last block's), plus the last block's maps as a second output for
    ``bilinear``'s group, or the last block's maps alone for a map pooling. Pooling in the graph,
    on the model's own channels-first maps, made the int8 engine 1.2x faster on a Xeon with AMX
    than pooling its channels-last outputs in NumPy."""
    import openvino as ov
    import openvino.opset13 as ops

    maps = [result.input_value(0) for result in model.get_results()]
    if pooling in MAP_STRIDES:
        outputs = maps[-1:]
    else:
        reducers = {Pooling.AVG: (ops.reduce_mean,), Pooling.MAX: (ops.reduce_max,)}.get(
            pooling, (ops.reduce_mean, ops.reduce_max))
        pooled = [reduce(*_channels_first(ops, output), False) for output in
                  (maps if pooling in GROUPED_POOLINGS else maps[-1:]) for reduce in reducers]
        outputs = [ops.concat(pooled, axis=1).output(0)] + (maps[-1:] if pooling == Pooling.BILINEAR else [])
    return ov.Model(outputs, model.get_parameters(), model.get_friendly_name())


def _channels_first(ops, maps):
    """(maps, their spatial axes): a channels-last output pooled before the model's own transpose
    to it, else as it is."""
    node = maps.get_node()
    if node.get_type_name() == "Transpose" and list(node.input_value(1).get_node().get_data()) == [0, 2, 3, 1]:
        return node.input_value(0), ops.constant(np.array([2, 3], np.int64))
    return maps, ops.constant(np.array([1, 2], np.int64))


def _convolution(ops, x, kernel: np.ndarray, bias: np.ndarray, padding: int):
    """A Keras Conv2D (HWIO kernel, ``same`` padding for 3x3) on NCHW ``x``."""
    weights = ops.constant(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), np.float32))
    x = ops.convolution(x, weights, strides=[1, 1], pads_begin=[padding] * 2, pads_end=[padding] * 2,
                        dilations=[1, 1])
    return ops.add(x, ops.constant(np.asarray(bias, np.float32).reshape(1, -1, 1, 1)))
