"""The OpenVINO graph of VGG16 built from the weights file: the same weights as Keras reads, the
same features as the Keras backbone, and no TensorFlow on the way."""

from dataclasses import replace

import h5py
import numpy as np
import pytest

from features import BackboneSpec, open_engine, resolve_weights
from features.engines.vgg16_graph import read_conv_weights
from features.spec import engine_installed
from tests.conftest import REAL_WEIGHTS, REPORT_TENSORFLOW, cli_process, extract_args

needs_openvino = pytest.mark.skipif(not engine_installed(), reason="the fast extra (openvino, nncf) is not installed")


def keras_weights(path=None, seed=0):
    """The thirteen (kernel, bias) pairs as Keras' own VGG16 loader reads ``path`` (random from ``seed``)."""
    import keras
    from keras.applications import vgg16

    keras.utils.set_random_seed(seed)
    model = vgg16.VGG16(include_top=False, weights=path, input_shape=(32, 32, 3))
    return model, [layer.get_weights() for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def assert_same_pairs(read, expected):
    assert read is not None and len(read) == len(expected) == 13
    for (kernel, bias), (expected_kernel, expected_bias) in zip(read, expected):
        np.testing.assert_array_equal(kernel, expected_kernel)
        np.testing.assert_array_equal(bias, expected_bias)


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory):
    """Random VGG16 weights written as Keras 3 writes them and in the Keras 2 layout of the
    ImageNet download, and the pairs Keras holds."""
    folder = tmp_path_factory.mktemp("weights")
    model, pairs = keras_weights(seed=7)
    keras3 = folder / "random.weights.h5"
    model.save_weights(keras3)
    legacy = folder / "random_notop.h5"
    with h5py.File(legacy, "w") as handle:
        handle.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        for layer in model.layers:
            group = handle.create_group(layer.name)
            names = [f"{layer.name}_{kind}_1:0".encode() for kind in "Wb"][:len(layer.get_weights())]
            group.attrs["weight_names"] = names
            for name, value in zip(names, layer.get_weights()):
                group.create_dataset(name.decode(), data=value)
    return {"keras3": keras3, "legacy": legacy, "pairs": pairs}


@pytest.mark.parametrize("layout", ["keras3", "legacy"])
def test_both_weight_layouts_read_as_keras_reads_them(weights_files, layout):
    path = weights_files[layout]
    read = read_conv_weights(str(path))
    assert_same_pairs(read, keras_weights(str(path))[1])
    assert_same_pairs(read, weights_files["pairs"])


@pytest.mark.skipif(not REAL_WEIGHTS.is_file(), reason=f"the real weights are not at {REAL_WEIGHTS}")
def test_the_imagenet_weights_file_reads_as_keras_reads_it():
    assert_same_pairs(read_conv_weights(str(REAL_WEIGHTS)), keras_weights(str(REAL_WEIGHTS))[1])


def test_a_file_laid_out_otherwise_is_left_to_keras(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("kernel", data=np.zeros((3, 3, 3, 64), np.float32))
    assert read_conv_weights(str(other)) is None
    odd = tmp_path / "odd.weights.h5"
    with h5py.File(odd, "w") as handle:  # Keras 3's group names, a dataset where a group belongs
        handle.create_dataset("layers/conv2d", data=np.zeros(3))
    assert read_conv_weights(str(odd)) is None
    (tmp_path / "not_hdf5.h5").write_bytes(b"not an HDF5 file")
    assert read_conv_weights(str(tmp_path / "not_hdf5.h5")) is None


@needs_openvino
@pytest.mark.parametrize("size, pooling", [(48, "none"), (37, "avgmax"), (48, "block4_pool")])  # odd: pools round down
def test_the_graph_from_the_file_gives_the_keras_backbones_features(weights_files, size, pooling):
    spec = BackboneSpec(resolve_weights(str(weights_files["keras3"])), image_size=size, pooling=pooling, batch_size=4)
    images = np.random.default_rng(1).uniform(0, 255, (4, size, size, 3)).astype(np.float32)
    from_keras = open_engine(spec)(images)
    from_graph = open_engine(replace(spec, engine="openvino"))(images)
    assert from_graph.shape == from_keras.shape
    np.testing.assert_allclose(from_graph, from_keras, rtol=1e-4, atol=1e-4 * np.abs(from_keras).max())


@needs_openvino
def test_a_first_int8_store_on_a_weights_file_calibrates_without_tensorflow(weights_files, split_folder, tmp_path):
    result = cli_process(*extract_args(split_folder, tmp_path / "cache", "--weights", str(weights_files["keras3"]),
                                       "--precision", "int8", "--calibration-images", "8"), prelude=REPORT_TENSORFLOW)
    assert result.returncode == 0, result.stderr
    assert "Calibrating int8" in result.stderr and "tensorflow loaded: False" in result.stderr
