"""Content keys: a store's folder name is a hash of everything that shapes its features."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from features import Dataset, ExtractConfig, Weights
from pipeline.config import BACKBONE, EXTRACTION_VERSION, PREPROCESSING

# Settings that decide what is accepted, not what is computed.
NOT_IN_KEY = ("max_bad",)


def store_key(dataset: Dataset, config: ExtractConfig, weights: Weights) -> str:
    """16 hex digits of sha256 over backbone, weights, settings, file list and split."""
    settings = {k: v for k, v in config.to_dict().items() if k not in NOT_IN_KEY}
    identity = {
        "version": EXTRACTION_VERSION,
        "backbone": BACKBONE,
        "preprocessing": PREPROCESSING,
        "weights": weights.identity,
        "settings": settings,
        "class_names": dataset.class_names,
        "sources": [asdict(source) for source in dataset.sources],
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]
