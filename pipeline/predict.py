"""Classify new image files with a store's exact backbone settings and a fitted head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features import FeatureError, FeatureExtractor, FeatureStore, Weights, build_backbone, load_pixels
from features.backbone import file_sha256, resolve_weights
from features.dataset import is_image_name
from features.images import describe_error
from heads import Head
from pipeline.runs import Run, class_probabilities

BATCH_SIZE = 32
BACKBONE_SETTINGS = ("image_size", "pooling", "seed", "precision")


@dataclass
class Prediction:
    path: str
    label: str | None
    probability: float | None
    error: str | None = None


@dataclass
class Predictor:
    """Everything `predict` needs: backbone settings, recorded weights, class names and a head."""

    backbone: dict  # image_size, pooling, seed, precision
    dtype: str
    weights: dict  # identity, path (as recorded at extraction)
    class_names: list[str]
    head: Head

    @classmethod
    def from_run(cls, store: FeatureStore, run: Run) -> "Predictor":
        config = store.manifest["config"]
        return cls({k: config[k] for k in BACKBONE_SETTINGS}, store.manifest["dtype"],
                   {k: store.manifest["weights"][k] for k in ("identity", "path")},
                   store.class_names, run.head)


def expand_image_paths(items: list[Path]) -> list[Path]:
    """Files as given, folders replaced by the image files below them (sorted)."""
    paths = []
    for item in items:
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.is_file() and is_image_name(p.name))
        elif item.exists():
            paths.append(item)
        else:
            raise FeatureError(f"No such image or folder: {item}")
    if not paths:
        raise FeatureError(f"No images found in {', '.join(map(str, items))}.")
    return paths


def recorded_weights(recorded: dict, override: str | None = None) -> Weights:
    """The weights features were extracted with; refuses any whose identity differs."""
    if recorded["identity"] == "random":
        return Weights(path=None, identity="random")
    weights = resolve_weights(override) if override else _find_recorded(recorded)
    if weights.identity != recorded["identity"]:
        raise FeatureError(f"--weights {override} are not the weights the features were extracted "
                           f"with ({recorded['identity']}). Pass those weights.")
    return weights


def _find_recorded(recorded: dict) -> Weights:
    path = recorded["path"]
    if path and Path(path).is_file() and (recorded["identity"] == "imagenet"
                                          or recorded["identity"] == f"sha256:{file_sha256(path)}"):
        return Weights(path=path, identity=recorded["identity"])
    if recorded["identity"] == "imagenet":
        return resolve_weights("imagenet")
    raise FeatureError(f"The recorded weights file {path} is gone or changed. Pass --weights with "
                       f"the file whose {recorded['identity']} matches.")


def predict_paths(predictor: Predictor, paths: list[Path], weights: Weights) -> list[Prediction]:
    """One prediction per path, in order; unreadable files get an ``error`` instead."""
    size = predictor.backbone["image_size"]
    extractor = FeatureExtractor(build_backbone(size, predictor.backbone["pooling"], weights,
                                                predictor.backbone["seed"], predictor.backbone["precision"]))
    predictions = []
    for start in range(0, len(paths), BATCH_SIZE):
        batch = paths[start:start + BATCH_SIZE]
        pixels, readable = [], []
        for path in batch:
            try:
                pixels.append(load_pixels(path, size))
                readable.append(path)
            except Exception as error:  # reported per file, the rest still predicted
                predictions.append(Prediction(str(path), None, None, describe_error(error)))
        if readable:
            features = extractor(np.stack(pixels).astype(np.float32)).astype(predictor.dtype)
            proba = class_probabilities(predictor.head, features, len(predictor.class_names))
            for path, row in zip(readable, proba):
                best = int(row.argmax())
                predictions.append(Prediction(str(path), predictor.class_names[best], float(row[best])))
    order = {str(p): i for i, p in enumerate(paths)}
    return sorted(predictions, key=lambda p: order[p.path])
