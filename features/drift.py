"""The int8 drift guard: a calibrated model's pooled features (every column group it outputs: the
average and the max of blocks 3, 4 and 5) against fp32's on a few training photos at full size,
measured once per model and CPU class and recorded with the model.

int8 arithmetic differs between CPU classes (VNNI sums exactly; AVX2 without it goes through
16-bit sums), so a model that is right on one class is checked again the first time it runs on
another. Below ``DRIFT_THRESHOLD`` the model is refused: ``precision auto`` falls back to the next
fastest path and says why, an explicit int8 stops with the measured figure.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from features.dataset import Dataset
from features.errors import FeatureError
from features.spec import BackboneSpec, Pooling, column_groups, cpu_class, cpu_flags

logger = logging.getLogger(__name__)

# The lowest cosine to fp32 that any checked photo's features may have, in any column group.
# Sound models measured 0.991-0.9999 (docs/benchmarks.md, "int8 on every x86 CPU"); the 16-bit
# overflow that the guard exists for measured 0.76-0.88.
DRIFT_THRESHOLD = 0.99
DRIFT_IMAGES = 16  # training photos compared, spread over the classes as calibration's are


class Int8DriftError(FeatureError):
    """The calibrated int8 model drifts from fp32 on this CPU; ``drift`` holds the measurement."""

    def __init__(self, drift: dict):
        self.drift = drift
        super().__init__(
            f"int8 features drift from fp32 on this CPU ({drift['cpu_class']}): min cosine "
            f"{drift['min_cosine']:.4f} < {DRIFT_THRESHOLD} over {drift['images']} training photos at "
            f"{drift['image_size']} px. Use --precision auto (falls back to the fastest accurate path), "
            "fp32 or bf16.")


def pooled_cosines(reference: np.ndarray, features: np.ndarray, groups: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """Per column group (name -> [start, stop)), each photo's cosine between its two rows."""
    def cosine(a, b):
        return (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)

    return {name: cosine(reference[:, start:stop], features[:, start:stop]) for name, (start, stop) in groups.items()}


def measure_drift(int8_model, spec: BackboneSpec, pixels: np.ndarray) -> dict:
    """How far ``int8_model`` (the calibrated base, maps of blocks 3, 4 and 5 out) is from the fp32
    base on ``pixels`` (raw RGB at the spec's size), on this CPU, in every column group of
    ``blocks`` pooling."""
    from features.engines.openvino_engine import OpenVinoEngine, to_openvino

    pooled = dataclasses.replace(spec, pooling=Pooling.BLOCKS.value)
    fp32 = dataclasses.replace(pooled, precision="fp32", engine="openvino")
    reference = OpenVinoEngine(to_openvino(fp32, len(pixels)), fp32)(pixels)
    features = OpenVinoEngine(int8_model, pooled, pool_maps=True)(pixels)
    by_group = pooled_cosines(reference, features, column_groups(pooled.pooling))
    cosines = np.min(list(by_group.values()), axis=0)  # per photo, its worst group
    return {"cpu_class": cpu_class(cpu_flags()), "min_cosine": round(float(cosines.min()), 5),
            "mean_cosine": round(float(cosines.mean()), 5), "images": len(pixels),
            "image_size": spec.image_size,
            "min_cosine_by_group": {name: round(float(c.min()), 5) for name, c in by_group.items()}}


def drift_pixels(dataset: Dataset, image_size: int) -> np.ndarray:
    """``DRIFT_IMAGES`` of the dataset's training photos at full size, as calibration picks them."""
    from features.calibration import calibration_batches, calibration_sources

    sources = calibration_sources(dataset, DRIFT_IMAGES)
    return calibration_batches(dataset, sources, image_size, len(sources))[0]


def check_drift(model_file, provenance: dict, dataset: Dataset, spec: BackboneSpec) -> dict:
    """This CPU class's drift record for the model (``provenance["drift"]``, measured now and added
    there when missing); raises ``Int8DriftError`` when it is below the threshold."""
    from features.engines.openvino_engine import load_openvino_model

    klass = cpu_class(cpu_flags())
    drift = provenance.setdefault("drift", {}).get(klass)
    if drift is None:
        logger.info("int8: checking the calibrated model against fp32 on %d training photos at %d px "
                    "(once per CPU class, here %s)...", DRIFT_IMAGES, spec.image_size, klass)
        drift = measure_drift(load_openvino_model(model_file), spec, drift_pixels(dataset, spec.image_size))
        provenance["drift"][klass] = drift
    if drift["min_cosine"] < DRIFT_THRESHOLD:
        raise Int8DriftError(drift)
    logger.info("int8 drift on this CPU (%s): min cosine to fp32 %.4f (mean %.4f) over %d photos.",
                klass, drift["min_cosine"], drift["mean_cosine"], drift["images"])
    return drift


def describe_drift(drift: dict) -> str:
    """One drift record in words, for reports."""
    return (f"{drift['cpu_class']}: min cosine to fp32 {drift['min_cosine']:.4f} (mean {drift['mean_cosine']:.4f}, "
            f"{drift['images']} photos at {drift['image_size']} px)")
