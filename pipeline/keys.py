"""Content keys of stores about to be built, from the data, the settings and the weights.

The hash itself lives in ``features.keys``, so that a store recomputes its key from its
manifest with the same function.
"""

from __future__ import annotations

from dataclasses import asdict

from features import Dataset, ExtractConfig
from features.keys import content_key


def store_key(dataset: Dataset, config: ExtractConfig, int8_identity: str | None = None) -> str:
    """16 hex digits of sha256 over backbone, weights, settings, file list and split (and, for
    int8, the calibrated model's identity)."""
    return content_key(config.to_dict(), config.weights.identity, dataset.class_names,
                       [asdict(source) for source in dataset.sources], int8_identity)
