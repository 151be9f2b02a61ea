"""`export`: the chosen head with everything needed to use it away from the store.

An export never deletes what it did not create: an existing ``--out`` is replaced only
with ``force`` and only when it is an earlier export (a folder holding ``export.json`` and
only the files it records, or a ``.keras`` file with its ``.classes.json`` beside it); the
new export is written under a temporary name first and swapped in whole.

- dense and finetune: one Keras model, raw RGB images (0-255, any size) in, class probabilities
  out: Resizing (antialiased, as `load_pixels`' Pillow resize is) -> the backbone model (VGG16
  preprocessing as a fixed 1x1 convolution, then the base: the very model `features` runs; up to
  block4_pool for finetune) -> head (finetune's holds the trained block 5).
  The base runs in the store's precision, float32 for an int8 store (Keras has no int8 VGG16).
  A ``<name>.classes.json`` beside it lists the class names in output order. Fed each photo
  upright in RGB at its own size, a JPEG decoded with Pillow's ``draft`` for the store's size (as
  `load_pixels` decodes it), it gives `predict`'s probabilities to within the rounding of Pillow's
  resize; a JPEG decoded in full differs by that reduced-scale decode.
- scikit-learn heads: a folder, ``export.json`` (backbone settings, weights, class names,
  sha256 of the head files) and ``model/`` (plus ``int8/``, the calibrated base, for an
  int8 store), which ``predict --export`` loads (``Predictor.from_export``: no Keras needed).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath

import keras
import numpy as np

from features import FeatureStore, build_backbone
from features.calibration import INT8_DIR, model_hashes
from features.store import atomic_write_bytes
from heads import DenseHead, FinetuneHead, LogRegHead
from heads._base import selected_ranges
from heads._dense import column_model
from pipeline.errors import PipelineError
from pipeline.predict import EXPORT_FILE, Predictor
from pipeline.replace import replace_folder
from pipeline.runs import MODEL_DIR, Run, hash_folder
from pipeline.stores import recorded_weights, write_json


def horizontal_flip(width: int) -> keras.Sequential:
    """Mirror (batch, height, ``width``, channels) images left to right with built-in layers:
    width moved last, a fixed anti-identity ``Dense`` reverses it (exact: one 1.0 per column),
    moved back."""
    flip = keras.layers.Dense(width, use_bias=False, trainable=False, name="reverse_width")
    flip.build((None, None, None, width))
    flip.set_weights([np.eye(width, dtype=np.float32)[::-1]])
    return keras.Sequential([keras.layers.Permute((1, 3, 2)), flip, keras.layers.Permute((1, 3, 2))],
                            name="horizontal_flip")


KERAS_EXPORTABLE = (DenseHead, FinetuneHead, LogRegHead)
KERAS_ONLY = (DenseHead, FinetuneHead)  # Keras networks: one .keras model, never a folder


def head_layers(head) -> keras.Model:
    """The fitted head as Keras layers, features in, probabilities out."""
    return head.model_ if isinstance(head, KERAS_ONLY) else logistic_regression_model(head)


def logistic_regression_model(head: LogRegHead) -> keras.Model:
    """A fitted logistic-regression head in built-in Keras layers, step for step.

    ``MinMaxScaler(clip=True)`` is a ``Normalization`` onto [0, 1] and ``ReLU(max_value=1)``;
    ``StandardScaler`` and the linear model fold into one ``Dense`` softmax layer (two
    classes: logits 0 and w.x+b, whose softmax is the sigmoid scikit-learn uses); the column
    groups it uses are cropped out of the row first. Only for ``normalize="none"``.
    """
    if head.normalization_ != "none":
        raise PipelineError(f"normalize={head.normalization_} has no built-in Keras layer; export as a folder.")
    steps = head.model_.named_steps
    clipper, scaler, classifier = steps["minmaxscaler"], steps["standardscaler"], steps["logisticregression"]
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    coef = classifier.coef_ / scale
    intercept = classifier.intercept_ - (classifier.coef_ * scaler.mean_ / scale).sum(axis=1)
    if len(coef) == 1:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    n_features = int(np.prod(head.feature_shape_))
    model = keras.Sequential([
        keras.Input(shape=head.feature_shape_),
        keras.layers.Flatten(),
        *column_model(selected_ranges(getattr(head, "column_groups", None), head.columns_, n_features), n_features),
        keras.layers.Normalization(mean=-clipper.min_ / clipper.scale_, variance=clipper.scale_ ** -2.0,
                                   name="onto_training_range"),
        keras.layers.ReLU(max_value=1.0, name="clip_to_training_range"),
        keras.layers.Dense(len(coef), activation="softmax", name="logistic_regression"),
    ], name="logreg_head")
    model.layers[-1].set_weights([coef.T.astype(np.float32), intercept.astype(np.float32)])
    return model


def export_run(store: FeatureStore, run: Run, out: Path, weights_override: str | None = None,
               force: bool = False) -> Path:
    """Write the export for ``run`` to ``out``; return what was written."""
    predictor = Predictor.from_run(store, run)
    if out.suffix == ".keras":
        if not isinstance(run.head, KERAS_EXPORTABLE):
            raise PipelineError(f"The {run.info['head']} head exports as a folder, not one .keras model. "
                                "Pass --out with a folder name.")
        if isinstance(run.head, LogRegHead) and run.head.normalization_ != "none":
            raise PipelineError(f"This logreg head uses normalize={run.head.normalization_} (signed square "
                                "root, its default), which has no built-in Keras layer: it exports as a folder, "
                                "not one .keras model. Pass --out with a folder name, export the dense head, or "
                                "fit logreg with --param normalize=none for a .keras model.")
        check_destination(out, force, is_folder=False)
        return _export_keras(predictor, out, weights_override)
    if isinstance(run.head, KERAS_ONLY):
        raise PipelineError(f"The {run.info['head']} head exports as one Keras model: pass --out NAME.keras. "
                            f"Received: {out}")
    check_destination(out, force, is_folder=True)
    temporary = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        _write_export_folder(store, run, predictor, temporary)
        replace_folder(temporary, out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return out


def _write_export_folder(store: FeatureStore, run: Run, predictor: Predictor, folder: Path) -> None:
    """``folder``: the head's files, the calibrated base for an int8 store, and ``export.json``."""
    shutil.copytree(run.folder / MODEL_DIR, folder / MODEL_DIR)
    info = {
        "head": run.info["head"], "store_key": store.key, "backbone": predictor.backbone,
        "dtype": predictor.dtype, "weights": predictor.weights, "class_names": predictor.class_names,
        "final_fit": run.info.get("final_fit"), "model_sha256": hash_folder(folder / MODEL_DIR),
    }
    if predictor.int8_folder:  # the calibrated base travels with the head
        shutil.copytree(predictor.int8_folder / INT8_DIR, folder / INT8_DIR)
        info["int8_sha256"] = model_hashes(folder / INT8_DIR)
    write_json(folder / EXPORT_FILE, info)


def check_destination(out: Path, force: bool, is_folder: bool) -> None:
    """Refuse an ``out`` that holds anything but (with ``force``) an earlier export, and a folder
    holding anything that earlier export did not write, naming it."""
    kind = "folder" if is_folder else ".keras file"
    if not (out.exists() or out.is_symlink()):
        return
    if out.is_symlink() or out.is_dir() != is_folder:
        raise PipelineError(f"--out {out} exists and is not a {kind}; choose another --out.")
    if is_folder and not any(out.iterdir()):
        return
    earlier = (out / EXPORT_FILE).is_file() if is_folder else classes_file(out).is_file()
    if not earlier:
        raise PipelineError(f"--out {out} exists and is not an earlier export; it is left as it is. "
                            "Choose another --out.")
    if not force:
        raise PipelineError(f"--out {out} holds an earlier export; pass --force to replace it.")
    others = not_exported(out) if is_folder else []
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise PipelineError(f"--out {out} holds {others[0]!r}{more}, which no export wrote; --force replaces "
                            "only an export's own files, so nothing was changed. Move it out, or choose "
                            "another --out.")


def not_exported(out: Path) -> list[str]:
    """The paths under the export folder ``out`` that its ``export.json`` does not record (all but
    that file when it cannot be read), sorted."""
    try:
        info = json.loads((out / EXPORT_FILE).read_bytes())
        written = {EXPORT_FILE, *(f"{MODEL_DIR}/{name}" for name in info["model_sha256"]),
                   *(f"{INT8_DIR}/{name}" for name in info.get("int8_sha256", {}))}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        written = {EXPORT_FILE}
    folders = {parent.as_posix() for name in written for parent in PurePosixPath(name).parents}
    found = []
    for top, directories, files in os.walk(out):  # links are listed, never followed
        for name in [*directories, *files]:
            path = Path(top, name)
            relative = path.relative_to(out).as_posix()
            known = relative in folders if name in directories and not path.is_symlink() else relative in written
            if not known:
                found.append(relative)
                if name in directories:
                    directories.remove(name)  # named as a whole
    return sorted(found)


def classes_file(model_file: Path) -> Path:
    """The class names written beside an exported ``NAME.keras``: ``NAME.classes.json``."""
    return model_file.with_suffix(".classes.json")


def _export_keras(predictor: Predictor, out: Path, weights_override: str | None) -> Path:
    spec = predictor.spec(recorded_weights(predictor.weights, weights_override))
    size = spec.image_size
    backbone = build_backbone(spec, precision="fp32" if spec.precision == "int8" else spec.precision)
    images = keras.Input(shape=(None, None, 3), name="rgb_0_255")
    # antialiased like Pillow's: a plain bilinear resize samples a large photo at a few points
    x = keras.layers.Resizing(size, size, interpolation="bilinear", antialias=True, name="resize")(images)
    if spec.views == 2:  # the store averaged each image's and its mirror's features
        x = keras.layers.Average(name="average_views")([backbone(x), backbone(horizontal_flip(size)(x))])
    else:
        x = backbone(x)
    if predictor.dtype == "float16":  # the head was fitted on features stored in float16
        x = keras.layers.Activation("linear", dtype="float16")(x)
    probabilities = head_layers(predictor.head)(x)
    model = keras.Model(images, probabilities, name="vgg16_bottleneck_classifier")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.stem}.tmp-{os.getpid()}.keras")
    model.save(temporary)
    os.replace(temporary, out)
    atomic_write_bytes(classes_file(out), (json.dumps(
        [predictor.class_names[int(c)] for c in predictor.head.classes_], indent=1) + "\n").encode())
    return out
