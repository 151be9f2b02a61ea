"""Content keys: a store's folder name is a hash of everything that shapes its features.

The key is computed from the same fields the manifest records, so a store's key can be
recomputed from its own manifest: an edited manifest (class order, settings, file list)
no longer hashes to its key.
"""

from __future__ import annotations

import hashlib
import json

# Bumped whenever the way features are computed changes, so old stores are not reused.
EXTRACTION_VERSION = 1
BACKBONE = "keras.applications.VGG16(include_top=False)"
PREPROCESSING = "pillow draft+exif upright+RGB+bilinear resize; vgg16.preprocess_input"

# Settings that decide what is accepted, not what is computed.
NOT_IN_KEY = ("max_bad",)


def content_key(config: dict, weights_identity: str, class_names, sources: list[dict],
                int8_identity: str | None = None) -> str:
    """16 hex digits of sha256 over backbone, weights, settings (less ``NOT_IN_KEY``), class
    names and the file list with each file's split; for an int8 store also the identity
    (sha256) of its calibrated model, which shapes its features as much as the weights do.
    Keys of fp32 and bf16 stores (``int8_identity`` None) are what they always were."""
    identity = {
        "version": EXTRACTION_VERSION,
        "backbone": BACKBONE,
        "preprocessing": PREPROCESSING,
        "weights": weights_identity,
        "settings": {k: v for k, v in config.items()  # views=1 left out: keys as before views
                     if k not in NOT_IN_KEY and not (k == "views" and v == 1)},
        "class_names": list(class_names),
        "sources": sources,
    }
    if int8_identity is not None:
        identity["int8_model"] = int8_identity
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def manifest_key(manifest: dict) -> str:
    """The key that a manifest's recorded config, weights, class names and sources hash to."""
    return content_key(manifest["config"], manifest["weights"]["identity"], manifest["class_names"],
                       manifest["sources"], manifest.get("int8", {}).get("identity"))
