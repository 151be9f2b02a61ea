"""`export`: the chosen head with everything needed to use it away from the store.

- dense: one Keras model, raw RGB images (0-255, any size) in, class probabilities out:
  Resizing -> VGG16 preprocessing (as a fixed 1x1 convolution) -> VGG16 base -> head.
  The base runs in the store's precision, float32 for an int8 store (Keras has no int8 VGG16).
  A ``<name>.classes.json`` beside it lists the class names in output order.
- scikit-learn heads: a folder, ``export.json`` (backbone settings, weights, class names,
  sha256 of the head files) and ``model/`` (plus ``int8/``, the calibrated base, for an
  int8 store), which ``predict --export`` loads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np

from features import FeatureStore, build_backbone
from features.calibration import INT8_DIR, MODEL_FILE, int8_problems, model_hashes
from heads import DenseHead, HeadError, head_class
from pipeline.predict import Predictor, backbone_settings, recorded_weights
from pipeline.runs import MODEL_DIR, Run, hash_folder
from pipeline.stores import write_json

EXPORT_FILE = "export.json"
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)  # what vgg16.preprocess_input subtracts


def vgg16_preprocessing_layer() -> keras.layers.Conv2D:
    """``vgg16.preprocess_input`` (RGB->BGR, minus the ImageNet mean) as a fixed 1x1 conv."""
    layer = keras.layers.Conv2D(3, 1, name="vgg16_preprocess", trainable=False)
    layer.build((None, None, None, 3))
    swap = np.zeros((1, 1, 3, 3), np.float32)
    for rgb, bgr in ((0, 2), (1, 1), (2, 0)):
        swap[0, 0, rgb, bgr] = 1.0
    layer.set_weights([swap, -np.asarray(IMAGENET_BGR_MEAN, np.float32)])
    return layer


def export_run(store: FeatureStore, run: Run, out: Path, weights_override: str | None = None) -> Path:
    """Write the export for ``run`` to ``out``; return what was written."""
    predictor = Predictor.from_run(store, run)
    if isinstance(run.head, DenseHead):
        return _export_keras(predictor, out, weights_override)
    if out.suffix == ".keras":
        raise HeadError(f"Only the dense head exports as one .keras model; the {run.info['head']} head "
                        "exports as a folder. Pass --out with a folder name.")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(run.folder / MODEL_DIR, out / MODEL_DIR)
    info = {
        "head": run.info["head"], "store_key": store.key, "backbone": predictor.backbone,
        "dtype": predictor.dtype, "weights": predictor.weights, "class_names": predictor.class_names,
        "model_sha256": hash_folder(out / MODEL_DIR),
    }
    if predictor.int8_model:  # the calibrated base travels with the head
        shutil.copytree(predictor.int8_model.parent, out / INT8_DIR)
        info["int8_sha256"] = model_hashes(out / INT8_DIR)
    write_json(out / EXPORT_FILE, info)
    return out


def _export_keras(predictor: Predictor, out: Path, weights_override: str | None) -> Path:
    if out.suffix != ".keras":
        raise HeadError(f"The dense head exports as one Keras model: pass --out NAME.keras. Received: {out}")
    size = predictor.backbone["image_size"]
    precision = "fp32" if predictor.backbone["precision"] == "int8" else predictor.backbone["precision"]
    base = build_backbone(size, predictor.backbone["pooling"], recorded_weights(predictor.weights, weights_override),
                          predictor.backbone["seed"], precision)
    images = keras.Input(shape=(None, None, 3), name="rgb_0_255")
    x = keras.layers.Resizing(size, size, interpolation="bilinear", name="resize")(images)
    x = base(vgg16_preprocessing_layer()(x))
    if predictor.dtype == "float16":  # the head was fitted on features stored in float16
        x = keras.layers.Activation("linear", dtype="float16")(x)
    probabilities = predictor.head.model_(x)
    model = keras.Model(images, probabilities, name="vgg16_bottleneck_classifier")
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    out.with_suffix(".classes.json").write_text(json.dumps(
        [predictor.class_names[int(c)] for c in predictor.head.classes_], indent=1) + "\n")
    return out


def load_export(folder: Path) -> Predictor:
    """A ``Predictor`` from an exported folder, after checking its head files' sha256."""
    path = folder / EXPORT_FILE
    if not path.is_file():
        raise HeadError(f"No {EXPORT_FILE} in {folder}: not an exported head folder. Create one with "
                        "`python -m pipeline export`.")
    info = json.loads(path.read_text())
    if hash_folder(folder / MODEL_DIR) != info["model_sha256"]:
        raise HeadError(f"The head files in {folder / MODEL_DIR} do not match the sha256 in {EXPORT_FILE}; "
                        "export it again.")
    int8_model = None
    if "int8_sha256" in info:
        problems = int8_problems(folder, info["int8_sha256"])
        if problems:
            raise HeadError(f"Cannot use the export {folder}: {problems[0]}. Export it again.")
        int8_model = folder / INT8_DIR / MODEL_FILE
    head = head_class(info["head"]).load(folder / MODEL_DIR)
    return Predictor(backbone_settings(info["backbone"]), info["dtype"], info["weights"],
                     info["class_names"], head, int8_model)
