"""int8 calibration: quantize the VGG16 base once per weights and image size, and reuse it.

The calibrated model does not depend on the data set it was calibrated on in any way the
store key has to know about beyond its own bytes, so it is kept in a cache next to the
stores, ``<cache>/int8-models/<id>/``, keyed by the weights' identity, the image size and
the number of calibration images (and a format version), never by the data. A later store
on the same weights and size (new photos added, another pooling) links that very model
instead of calibrating again; ``--recalibrate`` calibrates anew on the current data and
replaces the cache entry. The base is quantized without its pooling, with the maps of blocks
3, 4 and 5 out (pooling is done on the engine's output), so one model serves every pooling.

Every int8 store still holds its own copy of the model (``int8/``, hard-linked where the
filesystem allows), with the model's sha256 in the manifest and in the store key, so
resuming, ``predict``, ``export`` and Dask workers use the very same model, and the
manifest records which cache entry it came from and what it was calibrated on.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.dataset import Dataset
from features.drift import check_drift
from features.engines import INT8_DIR, INT8_MODEL_FILE, int8_model_path
from features.engines.vgg16_graph import BLOCK_MAPS
from features.errors import FeatureError
from features.images import load_pixels
from features.spec import MIN_IMAGE_SIZE, BackboneSpec
from features.store import TEMPORARY_MARK, StoreWriter, atomic_write_bytes
from features.weights import file_sha256

logger = logging.getLogger(__name__)

MODEL_FILE = INT8_MODEL_FILE
MODEL_FILES = (MODEL_FILE, "vgg16-int8.bin")
CACHE_DIR = "int8-models"  # inside the store cache: <cache>/int8-models/<id>/
PROVENANCE_FILE = "calibration.json"
# Bumped when the way the cached model is made changes (2: the preprocessing is a layer of
# the converted graph; 3: the graph built from the weights file, calibrated at half the size;
# 4: 7-bit weights in every layer, the same arithmetic on every CPU, activation ranges from the
# calibration images' extremes; 5: the maps of blocks 3, 4 and 5 out, for `blocks` pooling).
CACHE_FORMAT = 5
# Images per calibration batch: NNCF keeps every activation of a batch while it collects
# statistics, so this sets calibration's peak memory (batch 32 at 224 px: 7.0 GB).
CALIBRATION_BATCH = 4


def calibration_sources(dataset: Dataset, count: int) -> list[int]:
    """``count`` training images spread evenly over the (class-sorted) file list; the same every run."""
    train = dataset.indices("train")
    if len(train) <= count:
        return list(train)
    return [train[i] for i in np.linspace(0, len(train) - 1, count).round().astype(int)]


def calibration_batches(dataset: Dataset, sources: list[int], image_size: int, batch_size: int) -> list[np.ndarray]:
    """Full batches of the readable sample images (the last one topped up from the start),
    decoded on every core."""
    def decode(index):
        try:
            return load_pixels(dataset.root / dataset.sources[index].path, image_size)
        except Exception:  # unreadable files are reported by the extraction itself
            return None

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        pixels = [image for image in pool.map(decode, sources) if image is not None]
    if not pixels:
        raise FeatureError("No readable training image to calibrate int8 with.")
    count = -(-len(pixels) // batch_size) * batch_size
    images = np.stack([pixels[i % len(pixels)] for i in range(count)]).astype(np.float32)
    return [images[i:i + batch_size] for i in range(0, count, batch_size)]


def calibration_image_size(image_size: int) -> int:
    """The side calibration runs at: half the image's (a quarter of the pixels, so a quarter of
    the float32 statistics pass), never below VGG16's smallest input. Per-tensor activation
    ranges taken at half the size held the accuracy guard on both shared sets at 224 px
    (docs/benchmarks.md, "Calibration size")."""
    return max(MIN_IMAGE_SIZE, image_size // 2)


def quantize_int8(spec: BackboneSpec, batches: list[np.ndarray], pooling: str = BLOCK_MAPS):
    """The VGG16 base (with preprocessing) post-training quantized to int8 by NNCF on ``batches``,
    for ``spec``'s image size whatever the batches' size.

    Weights per channel, activations per tensor, from the batches' statistics (no bias
    correction: measured not needed); the batch size of the model is that of the batches.
    Stores quantize the maps of blocks 3, 4 and 5 (``BLOCK_MAPS``, three outputs), which every
    pooling is computed from.

    Activation ranges are the extremes over all calibration images (NNCF's default averages each
    batch's extremes, which clipped high-contrast textures: min cosine to fp32 0.971 over dtd_6's
    480 photos, 0.991 with the extremes).

    Every layer's weights are quantized to 7 bits (NNCF's overflow fix on all layers, not only the
    first): CPUs without VNNI multiply u8 activations by s8 weights into 16-bit sums that saturate
    with 8-bit weights (min cosine to fp32 0.88 on an AVX2-only EPYC), and fit with 7-bit ones. So
    the model computes the same integer sums on every x86 CPU, VNNI or not, and one calibrated
    model (one store, one Dask cluster of mixed workers) gives the same features everywhere.
    """
    import nncf
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from features.engines.openvino_engine import to_openvino

    batch, side = batches[0].shape[:2]
    model = to_openvino(dataclasses.replace(spec, image_size=side), batch, pooling)
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches),
                              target_device=nncf.TargetDevice.CPU,
                              advanced_parameters=nncf.AdvancedQuantizationParameters(
                                  overflow_fix=nncf.OverflowFix.ENABLE, disable_bias_correction=True,
                                  activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX))
    quantized.reshape([batch, spec.image_size, spec.image_size, 3])
    return quantized


def quantize_on(dataset: Dataset, spec: BackboneSpec) -> tuple[object, list[int]]:
    """The base quantized as a store's calibration does it (the spec's count of ``dataset``'s
    training images, at ``calibration_image_size``, ``CALIBRATION_BATCH`` at a time), and the
    images it used."""
    sources = calibration_sources(dataset, spec.calibration_images)
    side = calibration_image_size(spec.image_size)
    logger.info("Calibrating int8 on %d training images at %d px (once per weights and image size; "
                "later stores reuse it)...", len(sources), side)
    return quantize_int8(spec, calibration_batches(dataset, sources, side, CALIBRATION_BATCH)), sources


def model_hashes(folder: Path) -> dict[str, str]:
    return {path.name: file_sha256(path) for path in sorted(folder.iterdir())}


def model_identity(sha256: dict[str, str]) -> str:
    """One ``sha256:<hex>`` for a model's files, from their hashes."""
    canonical = json.dumps(sha256, sort_keys=True, separators=(",", ":")).encode()
    return f"sha256:{hashlib.sha256(canonical).hexdigest()}"


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


def recorded_int8_identity(manifest: dict) -> str | None:
    """The int8 model identity that is part of the store key (None for fp32/bf16 stores and
    for int8 stores made before models were cached)."""
    return manifest.get("int8", {}).get("identity")


# --- the cache of calibrated models -------------------------------------------------------


@dataclass(frozen=True)
class CalibratedModel:
    """A cache entry: the folder holding the model files and ``calibration.json``."""

    folder: Path
    sha256: dict  # model file name -> sha256
    provenance: dict

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def identity(self) -> str:
        return model_identity(self.sha256)

    def record(self) -> dict:
        """What an int8 store's manifest records about the model it uses."""
        return {"identity": self.identity, "sha256": self.sha256, "model": self.id,
                "calibration": self.provenance}


def cache_id(spec: BackboneSpec) -> str:
    """The cache entry for the spec's weights, image size and calibration count (random
    weights are drawn from its seed, so it counts for them only). Not the data: any data
    calibrates."""
    size, count = spec.image_size, spec.calibration_images
    identity = {"format": CACHE_FORMAT, "weights": spec.weights.identity, "image_size": size,
                "precision": "int8", "calibration_images": count,
                "seed": spec.seed if spec.weights.path is None else None}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"vgg16-{size}px-int8-{count}-{digest}"


def read_cached(folder: Path) -> CalibratedModel | None:
    """The cache entry in ``folder`` if it is whole (model files and provenance), else None."""
    try:
        provenance = json.loads((folder / PROVENANCE_FILE).read_text())
        sha256 = {name: file_sha256(folder / name) for name in MODEL_FILES}
    except (OSError, ValueError):
        return None
    if provenance.get("sha256") != sha256:  # damaged or half-replaced: not trusted
        return None
    return CalibratedModel(folder, sha256, provenance)


def _software() -> dict:
    import importlib.metadata as metadata

    versions = {}
    for name in ("openvino", "nncf", "tensorflow", "keras"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def calibrate(cache: Path, dataset: Dataset, spec: BackboneSpec) -> CalibratedModel:
    """Quantize the base (maps out, no pooling) on the spec's count of ``dataset``'s training images and
    write it into the cache atomically, replacing an earlier entry for the same id."""
    import gc

    import openvino as ov

    started = time.perf_counter()
    quantized, sources = quantize_on(dataset, spec)
    root = Path(cache) / CACHE_DIR
    target = root / cache_id(spec)
    temporary = root / f".{target.name}{TEMPORARY_MARK}{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        ov.save_model(quantized, str(temporary / MODEL_FILE), compress_to_fp16=False)
        del quantized
        gc.collect()
        sha256 = {name: file_sha256(temporary / name) for name in MODEL_FILES}
        provenance = {
            "format": CACHE_FORMAT, "weights": spec.weights.identity, "image_size": spec.image_size,
            "calibration_images": spec.calibration_images, "batch": CALIBRATION_BATCH, "seed": spec.seed,
            "calibration_image_size": calibration_image_size(spec.image_size),
            "data_root": str(Path(dataset.root).resolve()),
            "sources": [dataset.sources[i].path for i in sources],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1), "software": _software(), "sha256": sha256,
        }
        (temporary / PROVENANCE_FILE).write_bytes(provenance_json(provenance))
        old = root / f".{target.name}.old{TEMPORARY_MARK}{os.getpid()}"
        if target.exists():
            os.replace(target, old)  # stores keep their own links to the old model's files
        os.replace(temporary, target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise FeatureError(f"Could not write the int8 model to {target}: {error.strerror or error}. "
                           "Free disk space, then rerun the same command.") from None
    logger.info("Calibrated int8 in %.0f s; cached in %s.", provenance["seconds"], target)
    return CalibratedModel(target, sha256, provenance)


def provenance_json(provenance: dict) -> bytes:
    return (json.dumps(provenance, indent=1, sort_keys=True) + "\n").encode()


def calibrated_model(cache: Path, dataset: Dataset, spec: BackboneSpec, recalibrate: bool = False) -> CalibratedModel:
    """The cached int8 model for the spec's weights, image size and calibration count,
    calibrated on ``dataset`` only when there is none yet or ``recalibrate`` asks for it, and
    checked against fp32 on this CPU class (``features.drift``: raises ``Int8DriftError``)."""
    folder = Path(cache) / CACHE_DIR / cache_id(spec)
    model = None if recalibrate else read_cached(folder)
    if model is not None:
        logger.info("int8: reusing the model calibrated on %d images of %s (%s); `recalibrate` to "
                    "calibrate on this data.", len(model.provenance["sources"]),
                    model.provenance["data_root"], model.provenance["date"])
    else:
        model = calibrate(cache, dataset, spec)
    checked = set(model.provenance.get("drift", {}))
    try:
        check_drift(model.folder / MODEL_FILE, model.provenance, dataset, spec)
    finally:  # a failed check is recorded too, so the next run falls back without measuring
        if set(model.provenance["drift"]) != checked:
            atomic_write_bytes(model.folder / PROVENANCE_FILE, provenance_json(model.provenance))
    return model


def install_int8_model(writer: StoreWriter, model: CalibratedModel) -> Path:
    """Put ``model``'s files in the store's ``int8/`` (hard links where possible) unless the very
    model is there already; the manifest must already record ``model``."""
    target = writer.folder / INT8_DIR
    if not int8_problems(writer.folder, model.sha256):
        return int8_model_path(writer.folder)
    temporary = writer.folder / f".{INT8_DIR}{TEMPORARY_MARK}{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir(parents=True)
        for name in MODEL_FILES:
            try:
                os.link(model.folder / name, temporary / name)
            except OSError:  # another filesystem, or no hard links there
                shutil.copyfile(model.folder / name, temporary / name)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(temporary, target)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise FeatureError(f"Could not write the int8 model to {target}: {error.strerror or error}. "
                           "Free disk space, then rerun the same command.") from None
    if int8_problems(writer.folder, model.sha256):
        raise FeatureError(f"The int8 model copied from {model.folder} to {target} does not match its sha256.")
    return int8_model_path(writer.folder)


def ensure_int8_model(writer: StoreWriter, dataset: Dataset, spec: BackboneSpec) -> Path:
    """The store's calibrated int8 model: its own copy when sound, else the cache entry its
    manifest names, linked in again; a store that names none gets the cached (or a newly
    calibrated) model recorded."""
    record = writer.manifest.get("int8")
    if record and not int8_problems(writer.folder, record["sha256"]):
        return int8_model_path(writer.folder)
    cache = writer.folder.parent
    if record:
        cached = read_cached(cache / CACHE_DIR / record["model"]) if "model" in record else None
        if cached is None or cached.sha256 != record["sha256"]:
            raise FeatureError(f"The calibrated int8 model of store {writer.folder} is missing or damaged, and "
                               f"the cache in {cache / CACHE_DIR} no longer holds it. Delete the store "
                               "folder and rerun `features`.")
        return install_int8_model(writer, cached)
    model = calibrated_model(cache, dataset, spec)
    writer.manifest["int8"] = model.record()
    writer.save_manifest()
    return install_int8_model(writer, model)
