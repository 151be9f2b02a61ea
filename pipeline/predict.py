"""Classify new image files with a store's exact backbone settings and a fitted head."""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from features import BackboneSpec, FeatureStore, Weights, open_engine, view_features
from features.calibration import int8_problems, recorded_int8_sha256
from features.dataset import UNDECODED_FORMATS, is_image_name, is_passed_over
from features.extract import decode_paths
from heads import Head, head_class
from pipeline.errors import PipelineError
from pipeline.runs import MODEL_DIR, Run, class_probabilities, hash_folder
from pipeline.stores import refresh_command

BACKBONE_SETTINGS = ("image_size", "pooling", "seed", "precision", "engine", "batch_size", "views")
# What a store written before an engine (or views) was chosen ran with.
BACKBONE_DEFAULTS = {"precision": "fp32", "engine": "keras", "batch_size": 32, "views": 1}
EXPORT_FILE = "export.json"  # an exported head folder's record (pipeline/export.py writes it)


@dataclass
class Prediction:
    """One image's result: every class's probability (in class order), or why it was not read."""

    path: str
    probabilities: np.ndarray | None
    error: str | None = None


@dataclass
class Predictor:
    """Everything `predict` needs: backbone settings, recorded weights, class names and a head."""

    backbone: dict  # BACKBONE_SETTINGS
    dtype: str
    weights: dict  # identity, path (as recorded at extraction)
    class_names: list[str]
    head: Head
    int8_folder: Path | None = None  # the store (or export) holding the calibrated model, for int8

    def spec(self, weights: Weights) -> BackboneSpec:
        return BackboneSpec.from_settings(self.backbone, weights)

    @classmethod
    def from_run(cls, store: FeatureStore, run: Run) -> "Predictor":
        int8_folder = None
        if "int8" in store.manifest:
            problems = int8_problems(store.folder, recorded_int8_sha256(store.manifest))
            if problems:
                make, cli = refresh_command(store)
                raise PipelineError(f"Cannot predict with store {store.key}: {problems[0]}. Repair it with "
                                    f"`{make}` (or `{cli}`), which links the model in again from the cache "
                                    "(or calibrates it afresh) and keeps the store's features.")
            int8_folder = store.folder
        return cls(backbone_settings(store.manifest["config"]), store.manifest["dtype"],
                   {k: store.manifest["weights"][k] for k in ("identity", "path")},
                   store.class_names, run.head, int8_folder)

    @classmethod
    def from_export(cls, folder: Path) -> "Predictor":
        """From an exported head folder, after checking its head files' sha256 (before any is opened)."""
        path = folder / EXPORT_FILE
        if not path.is_file():
            raise PipelineError(f"No {EXPORT_FILE} in {folder}: not an exported head folder. Create one with "
                                "`python -m pipeline export`.")
        info = json.loads(path.read_text())
        if hash_folder(folder / MODEL_DIR) != info["model_sha256"]:
            raise PipelineError(f"The head files in {folder / MODEL_DIR} do not match the sha256 in {EXPORT_FILE}; "
                                "export it again.")
        int8_folder = None
        if "int8_sha256" in info:
            problems = int8_problems(folder, info["int8_sha256"])
            if problems:
                raise PipelineError(f"Cannot use the export {folder}: {problems[0]}. Export it again.")
            int8_folder = folder
        head = head_class(info["head"]).load(folder / MODEL_DIR)
        return cls(backbone_settings(info["backbone"]), info["dtype"], info["weights"], info["class_names"],
                   head, int8_folder)


def backbone_settings(config: dict) -> dict:
    """The settings that decide how an image becomes features, from a store's recorded config."""
    return {k: config.get(k, BACKBONE_DEFAULTS.get(k)) for k in BACKBONE_SETTINGS}


def expand_image_paths(items: list[Path]) -> list[Path]:
    """Files as given, folders replaced by the image files below them (sorted).

    A file given by name is kept whatever it is, so that one that cannot be read (a FIFO,
    a folder-sized file) gets its own error record; inside folders only regular files count,
    and none below a hidden or system folder (``features.dataset.is_passed_over``: thumbnails).
    """
    paths = []
    for index, item in enumerate(items):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.is_file() and is_image_name(p.name)
                            and not any(map(is_passed_over, p.relative_to(item).parent.parts)))
        elif item.exists() or item.is_symlink():
            paths.append(item)
        else:
            raise PipelineError(f"No such image or folder: {item}{_split_name_hint(items, index)}")
    if not paths:
        undecoded = [path for item in items if item.is_dir() for path in item.rglob("*")
                     if path.name.lower().endswith(UNDECODED_FORMATS)]
        raise PipelineError(f"No images found in {', '.join(map(str, items))}"
                            + (f" ({len(undecoded)} HEIC/HEIF file(s), a format this tool does not decode: "
                               "convert them to JPEG or PNG)." if undecoded else "."))
    return paths


def learnt_photos(store: FeatureStore, run: Run) -> dict[str, str]:
    """Path -> split of each of the store's photos that ``run``'s saved head learnt from: the
    training photos, and the validation photos where it was refitted on them (``final_fit``)."""
    splits = ("train", "validation") if run.info.get("final_fit") else ("train",)
    root = store.manifest["data_root"]  # resolved; the sources below it hold no link to a folder
    return {os.path.join(root, source["path"]): source["split"]
            for source in store.manifest["sources"] if source["split"] in splits}


def learnt_photos_warning(paths: list[Path], learnt: dict[str, str]) -> str | None:
    """Where some of ``paths`` are photos the head learnt from (``learnt_photos``), a line saying
    that their predictions say nothing of its accuracy; else None."""
    seen = Counter(learnt[path] for path in map(os.path.realpath, paths) if path in learnt)
    if not seen:
        return None
    counts = " and ".join(f"{seen[split]} {split}" for split in ("train", "validation") if seen[split])
    refit = (" (the head was refitted on the validation photos after they had measured it; `--final-fit "
             "train` keeps them out of it)") if seen["validation"] else ""
    return (f"{sum(seen.values())} of the {len(paths)} images are photos the head learnt from ({counts}): "
            f"their predictions say nothing of its accuracy, which its validation figures measure{refit}.")


def _split_name_hint(items: list[Path], index: int) -> str:
    """Where ``items[index]`` and the items after it, joined by spaces, name a file or folder (a
    name with spaces, split by `make predict IMAGES=...`), how to keep it whole; else "". The items
    after it are taken as typed, relative to the working folder (the CLI made them absolute)."""
    for stop in range(index + 2, len(items) + 1):
        joined = " ".join([str(items[index]), *(os.path.relpath(item) for item in items[index + 1:stop])])
        if Path(joined).exists():
            return (f" ('{joined}' exists: a name with spaces was split; quote it, e.g. "
                    f"make predict IMAGES='\"{joined}\"')")
    return ""


def predict_batches(predictor: Predictor, paths: list[Path], weights: Weights) -> Iterator[list[Prediction]]:
    """One prediction per path, a batch at a time, in order; unreadable files get an ``error``
    instead. Each batch is decoded on every core."""
    spec = predictor.spec(weights)
    size, batch_size = spec.image_size, spec.batch_size
    engine = open_engine(spec, predictor.int8_folder)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for start in range(0, len(paths), batch_size):
            batch = paths[start:start + batch_size]
            decoded = decode_paths(batch, size, pool)
            readable = [index for index, (image, _) in enumerate(decoded) if image is not None]
            predictions = [Prediction(str(path), None, reason) for path, (_, reason) in zip(batch, decoded)]
            if readable:  # unreadable files keep their error, the rest are predicted
                pixels = np.stack([decoded[index][0] for index in readable]).astype(np.float32)
                features = view_features(engine, pixels, spec.views).astype(predictor.dtype)
                proba = class_probabilities(predictor.head, features, len(predictor.class_names))
                for index, row in zip(readable, proba):
                    predictions[index] = Prediction(str(batch[index]), row)
            yield predictions
