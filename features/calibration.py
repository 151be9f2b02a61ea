"""int8 calibration: quantize the VGG16 base once per store, on a fixed sample of its training images.

The calibrated model is kept in the store folder (``int8/``) with its sha256 in the
manifest, so resuming, `predict` and distributed workers all use the very same model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from features.backbone import Weights, file_sha256
from features.dataset import Dataset
from features.engines import to_openvino
from features.errors import FeatureError
from features.images import load_pixels
from features.store import TEMPORARY_MARK, StoreWriter

INT8_DIR = "int8"
MODEL_FILE = "vgg16-int8.xml"


def int8_model_path(store_folder: Path) -> Path:
    return Path(store_folder) / INT8_DIR / MODEL_FILE


def calibration_sources(dataset: Dataset, count: int) -> list[int]:
    """``count`` training images spread evenly over the (class-sorted) file list; the same every run."""
    train = dataset.indices("train")
    if len(train) <= count:
        return list(train)
    return [train[i] for i in np.linspace(0, len(train) - 1, count).round().astype(int)]


def calibration_batches(dataset: Dataset, sources: list[int], image_size: int, batch_size: int) -> list[np.ndarray]:
    """Full batches of the readable sample images (the last one topped up from the start)."""
    pixels = []
    for index in sources:
        try:
            pixels.append(load_pixels(dataset.root / dataset.sources[index].path, image_size))
        except Exception:  # unreadable files are reported by the extraction itself
            continue
    if not pixels:
        raise FeatureError("No readable training image to calibrate int8 with.")
    count = -(-len(pixels) // batch_size) * batch_size
    images = np.stack([pixels[i % len(pixels)] for i in range(count)]).astype(np.float32)
    return [images[i:i + batch_size] for i in range(0, count, batch_size)]


def quantize_int8(image_size: int, pooling: str, weights: Weights, seed: int, batches: list[np.ndarray]):
    """The VGG16 base (with preprocessing) post-training quantized to int8 by NNCF on ``batches``.

    Weights per channel, activations per tensor, from the batches' statistics; the batch
    size of the model is that of the batches.
    """
    import nncf

    model = to_openvino(image_size, pooling, weights, len(batches[0]), seed)
    return nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches),
                         target_device=nncf.TargetDevice.CPU)


def model_hashes(folder: Path) -> dict[str, str]:
    return {path.name: file_sha256(path) for path in sorted(folder.iterdir())}


def int8_problems(parent: Path, recorded_sha256: dict | None) -> list[str]:
    """Why ``parent``'s calibrated int8 model (a store's or an export's) is not the one whose
    hashes were recorded (empty if it is, or if none was recorded)."""
    if recorded_sha256 is None:
        return []
    folder = Path(parent) / INT8_DIR
    if not folder.is_dir():
        return [f"the calibrated int8 model {folder} is missing"]
    if model_hashes(folder) != recorded_sha256:
        return [f"the calibrated int8 model in {folder} differs from its recorded sha256"]
    return []


def recorded_int8_sha256(manifest: dict) -> dict | None:
    return manifest["int8"]["sha256"] if "int8" in manifest else None


def ensure_int8_model(writer: StoreWriter, dataset: Dataset, config, weights, log=print) -> Path:
    """The store's calibrated int8 model, quantized now unless a matching one is already there."""
    recorded = recorded_int8_sha256(writer.manifest)
    if recorded and not int8_problems(writer.folder, recorded):
        return int8_model_path(writer.folder)
    import openvino as ov

    sources = calibration_sources(dataset, config.calibration_images)
    log(f"Calibrating int8 on {len(sources)} training images (once per store)...")
    batches = calibration_batches(dataset, sources, config.image_size, config.batch_size)
    quantized = quantize_int8(config.image_size, config.pooling, weights, config.seed, batches)
    target = writer.folder / INT8_DIR
    temporary = writer.folder / f".{INT8_DIR}{TEMPORARY_MARK}{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        ov.save_model(quantized, str(temporary / MODEL_FILE), compress_to_fp16=False)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(temporary, target)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise FeatureError(f"Could not write the int8 model to {target}: {error.strerror or error}. "
                           "Free disk space, then rerun the same command.") from None
    writer.manifest["int8"] = {"calibration_sources": sources, "sha256": model_hashes(target)}
    writer.save_manifest()
    return int8_model_path(writer.folder)
