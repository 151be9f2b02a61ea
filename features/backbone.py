"""The frozen VGG16 convolutional base as one Keras model: raw RGB 0-255 in, features out."""

from __future__ import annotations

import keras
from keras.applications import vgg16

from features.bilinear import bilinear_layers
from features.errors import FeatureError
from features.preprocessing import vgg16_preprocessing
from features.spec import BLOCK_CHANNELS, GROUPED_POOLINGS, BackboneSpec, Pooling

KERAS_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}


def build_backbone(spec: BackboneSpec, precision: str | None = None, pooling: str | None = None) -> keras.Model:
    """VGG16 without its top, frozen, with its preprocessing, for ``spec``'s square input.

    ``precision`` and ``pooling`` override the spec's. bf16 builds the base under Keras'
    ``mixed_bfloat16`` policy (bfloat16 arithmetic, float32 weights), about twice as fast on
    CPUs with native bf16.
    """
    precision = precision or spec.precision
    pooling = pooling or spec.pooling
    if precision not in KERAS_POLICIES:
        raise FeatureError(f"Keras runs the VGG16 base in {' or '.join(KERAS_POLICIES)}, not {precision}.")
    keras.utils.set_random_seed(spec.seed)  # random weights are reproducible
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(KERAS_POLICIES[precision])
    try:
        images = keras.Input(shape=(spec.image_size, spec.image_size, 3), name="rgb_0_255")
        base = vgg16.VGG16(include_top=False, weights=spec.weights.path,
                           input_shape=(spec.image_size, spec.image_size, 3),
                           pooling=pooling if pooling in (Pooling.AVG, Pooling.MAX) else None)
        if pooling == Pooling.BLOCK4_POOL:  # block 5 is left to the finetune head
            base = keras.Model(base.inputs, base.get_layer("block4_pool").output, name="vgg16_to_block4")
        blocks = pooling in GROUPED_POOLINGS
        if blocks:  # the one pass, three blocks' maps out
            base = keras.Model(base.inputs, [base.get_layer(f"{b}_pool").output for b in BLOCK_CHANNELS],
                               name="vgg16_blocks")
        features = base(vgg16_preprocessing()(images))
        if pooling == Pooling.AVGMAX or blocks:  # each block's average then max (spec.column_groups)
            maps = features if blocks else [features]
            pooled = [pooled for block in maps for pooled in (keras.layers.GlobalAveragePooling2D()(block),
                                                                keras.layers.GlobalMaxPooling2D()(block))]
            if pooling == Pooling.BILINEAR:  # then block 5's compact bilinear group
                pooled.append(bilinear_layers(maps[-1]))
            features = keras.layers.Concatenate(name="avg_max")(pooled)
    except (ValueError, OSError) as error:
        raise FeatureError(f"Could not load VGG16 weights from {spec.weights.path}: "
                           f"{str(error).splitlines()[0][:200]}. Pass `weights` as the path to a VGG16 "
                           "include_top=False weights file.") from None
    finally:
        keras.config.set_dtype_policy(previous_policy)  # later models (heads) stay float32
    model = keras.Model(images, features, name="vgg16_features")
    model.trainable = False
    return model
