"""Stage one: images in, VGG16 bottleneck features cached as ``.npy`` shards out."""

from features.api import VGG16Features, load_store
from features.augment import AugmentConfig
from features.backbone import FeatureExtractor, Weights, build_backbone, resolve_weights
from features.dataset import Dataset, SourceFile, scan_dataset
from features.errors import FeatureError
from features.engines import build_engine
from features.extract import ExtractConfig, ExtractResult, extract, plan_shards
from features.images import load_pixels
from features.store import FeatureStore, Shard, StoreWriter

__all__ = [
    "AugmentConfig", "Dataset", "ExtractConfig", "ExtractResult", "FeatureError",
    "FeatureExtractor", "FeatureStore", "Shard", "SourceFile", "StoreWriter", "VGG16Features",
    "Weights", "build_backbone", "build_engine", "extract", "load_pixels", "load_store", "plan_shards",
    "resolve_weights", "scan_dataset",
]
