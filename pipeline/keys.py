"""Content keys of stores about to be built, from the data, the settings and the weights.

The hash itself lives in ``features.keys``, so that a store recomputes its key from its
manifest with the same function.
"""

from __future__ import annotations

from dataclasses import asdict

from features import Dataset, ExtractConfig, Weights
from features.keys import content_key


def store_key(dataset: Dataset, config: ExtractConfig, weights: Weights) -> str:
    """16 hex digits of sha256 over backbone, weights, settings, file list and split."""
    return content_key(config.to_dict(), weights.identity, dataset.class_names,
                       [asdict(source) for source in dataset.sources])
