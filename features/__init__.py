"""Stage one: images in, VGG16 bottleneck features cached as ``.npy`` shards out.

Names are imported on first use, so that ``import features`` (and commands that only read
stores) does not start TensorFlow. The ``extract`` function is imported from
``features.extract`` (a package attribute of that name is the module).
"""

__distribution__ = "bottleneck-heads"  # pipeline/packages.py checks this line at start-up

import importlib

_HOMES = {
    "VGG16Features": "features.api", "load_store": "features.api", "store_path": "features.api",
    "AugmentConfig": "features.augment",
    "build_backbone": "features.backbone",
    "Dataset": "features.dataset", "SourceFile": "features.dataset", "scan_dataset": "features.dataset",
    "Engine": "features.engines", "open_engine": "features.engines", "view_features": "features.engines",
    "FeatureError": "features.errors",
    "ExtractConfig": "features.extract", "ExtractResult": "features.extract",
    "plan_shards": "features.extract",
    "load_pixels": "features.images",
    "Manifest": "features.manifest", "read_manifest": "features.manifest",
    "BackboneSpec": "features.spec", "EngineName": "features.spec", "Pooling": "features.spec",
    "Precision": "features.spec",
    "FeatureStore": "features.store", "Shard": "features.store", "StoreWriter": "features.store",
    "Weights": "features.weights", "resolve_weights": "features.weights",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'features' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
