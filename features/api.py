"""Stage one from Python: a store as a scikit-learn ``Bunch``, and VGG16 features as a transformer.

    >>> from features import VGG16Features, load_store
    >>> train = load_store("latest", split="train")          # or a store key, or its folder
    >>> LogisticRegression().fit(train.data, train.target)   # rows read from the shards
    >>> model = make_pipeline(VGG16Features(weights=path), LogisticRegression())
    >>> model.fit(image_paths, labels).predict(new_paths)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from features.engines import open_engine, view_features
from features.errors import FeatureError
from features.images import load_pixels
from features.spec import BackboneSpec, Precision, cpu_flags, native_precision, resolve_engine
from features.store import FeatureStore
from features.weights import resolve_weights

LATEST_FILE = "LATEST"  # inside a cache folder: the key of the last store `features` finished


def store_path(key_or_path: str | Path, cache: str | Path = "cache") -> Path:
    """The folder of a store given by folder, by key inside ``cache``, or ``"latest"``."""
    cache = Path(cache).expanduser()
    if str(key_or_path) == "latest":
        latest = cache / LATEST_FILE
        if not latest.is_file():
            raise FeatureError(f"No feature store in {cache} yet: extract one first.")
        key_or_path = latest.read_text().strip()
    path = Path(key_or_path).expanduser()
    return path if path.is_dir() else cache / str(key_or_path)


def load_store(key_or_path: str | Path = "latest", split: str = "train", passes: bool = True,
               cache: str | Path = "cache") -> Bunch:
    """One split of a finished store, checked, as a scikit-learn ``Bunch``.

    ``data`` stays in the memory-mapped shard files (indexing rows reads only those rows;
    ``np.asarray(data)`` loads them all as float32); ``target`` holds class indices into
    ``target_names``; ``filenames`` are relative to ``data_root``; ``split`` and
    ``pass_index`` say where each row came from (pass 0 is the unaugmented image; training
    rows of augmented passes follow unless ``passes`` is False). ``groups`` (the source
    index of each row) keeps augmented twins together in ``GroupKFold``. ``column_groups`` names the
    feature columns of a ``blocks`` store (group -> [start, stop)); None for other poolings.
    """
    store = FeatureStore(store_path(key_or_path, cache))
    rows = store.split_rows(split, passes)
    return Bunch(
        data=rows["features"], target=rows["labels"], target_names=list(store.class_names),
        filenames=np.asarray(store.source_paths(rows["sources"]), dtype=object),
        split=np.full(len(rows["labels"]), split, dtype=object), pass_index=rows["passes"],
        groups=rows["sources"], data_root=store.manifest["data_root"], key=store.key,
        feature_shape=tuple(store.manifest["feature_shape"]), column_groups=store.column_groups,
    )


class VGG16Features(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Frozen VGG16 bottleneck features as a scikit-learn transformer.

    ``transform`` takes image paths (one path alone counts as a list of one; decoded exactly
    as `features` decodes them) or an array of RGB images (n, height, width, 3), values 0-255
    (an array of floats within 0-1 is refused: multiply it by 255), resized bilinearly to
    ``image_size``; it returns float32 features of shape (n, 1024) with the default
    ``pooling="avgmax"`` (block 5's average and max: the CLI's default, ``blocks``, feeds heads that
    choose among its column groups, which an estimator after this transformer does not), (n, 512) with avg or max, (n, 2560) with blocks (the average and max of
    blocks 3, 4 and 5: ``column_groups_`` names them), (n, 10752) with bilinear (blocks' and block 5's
    compact bilinear pooling, ``features.bilinear``), flattened maps with none (block 5's) or
    block4_pool (block 4's) (2 ``views`` average each image's and its mirror's features). With ``cache`` (a folder of feature stores), rows of
    files that a finished store with the same settings already holds are read from it
    instead of recomputed. ``fit`` learns nothing; the engine is built on first use, and is
    left out when the transformer is pickled (a fitted ``Pipeline`` saves with ``pickle`` or
    ``joblib``; the engine is rebuilt on its first use after loading). Output columns are
    named ``vgg16features0``, ... (``get_feature_names_out``, so ``set_output`` works).

    Parameters
    ----------
    image_size : int, square input size in pixels (32-1024).
    pooling : {"avg", "max", "avgmax", "blocks", "bilinear", "none", "block4_pool"}
    views : {1, 2}
    weights : str, "auto", "imagenet", "none" (random) or a weights file path.
    precision : {"auto", "fp32", "bf16"}, the convnet's arithmetic; auto: bf16 where the CPU
        has it natively, else fp32.
    batch_size : int, images per convnet batch.
    cache : str or None, a folder of feature stores to read known files from.
    """

    def __init__(self, image_size: int = 224, pooling: str = "avgmax", views: int = 1, weights: str = "auto",
                 precision: str = "auto", batch_size: int = 32, cache: str | None = None):
        self.image_size = image_size
        self.pooling = pooling
        self.views = views
        self.weights = weights
        self.precision = precision
        self.batch_size = batch_size
        self.cache = cache

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # it takes image paths or (n, height, width, 3) pixels
        tags.input_tags.string = True
        return tags

    def __getstate__(self) -> dict:
        """The pickled state, less the engine (a cache holding compiled graphs): rebuilt on first use."""
        state = super().__getstate__()
        state.pop("engine_", None)
        return state

    @property
    def _n_features_out(self) -> int:
        return self.n_features_out_

    def fit(self, X=None, y=None):
        self.spec_ = self._spec()
        self.n_features_out_ = int(np.prod(self.spec_.feature_shape))
        self.column_groups_ = self.spec_.column_groups
        return self

    def transform(self, X) -> np.ndarray:
        """Shape (n_images, n_features_out_), float32."""
        check_is_fitted(self, "n_features_out_")
        if isinstance(X, (str, Path)):
            X = [X]
        if isinstance(X, np.ndarray) and X.dtype.kind in "uif":
            return self._compute_pixels(np.stack([_resized(image, self.image_size) for image in _checked_pixels(X)]))
        paths = [Path(p).expanduser().resolve() for p in X]
        out = np.empty((len(paths), self.n_features_out_), np.float32)
        known = self._cached_rows(paths) if self.cache else {}
        for i, row in known.items():
            out[i] = row
        missing = [i for i in range(len(paths)) if i not in known]
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start:start + self.batch_size]
            pixels = np.stack([load_pixels(paths[i], self.image_size) for i in batch])
            out[batch] = self._compute_pixels(pixels)
        return out

    def _spec(self) -> BackboneSpec:
        """The backbone spec of these parameters (checked, weights resolved and hashed once)."""
        if self.precision not in (Precision.AUTO, Precision.FP32, Precision.BF16):
            raise FeatureError(f"`precision` must be one of auto, fp32, bf16. Received: {self.precision!r}")
        precision = native_precision(cpu_flags()) if self.precision == Precision.AUTO else self.precision
        if not isinstance(self.weights, (str, Path)):
            raise FeatureError("`weights` must be 'auto', 'imagenet', 'none' (random weights, as a string) "
                               f"or the path to a VGG16 include_top=False weights file. Received: {self.weights!r}")
        if getattr(self, "weights_", None) is None:
            self.weights_ = resolve_weights(str(self.weights))
        return BackboneSpec(weights=self.weights_, image_size=self.image_size, pooling=self.pooling,
                            views=self.views, precision=precision, engine=resolve_engine("auto", precision),
                            batch_size=self.batch_size)

    def _engine(self):
        if getattr(self, "engine_", None) is None:
            self.engine_ = open_engine(self.spec_)
        return self.engine_

    def _compute_pixels(self, pixels: np.ndarray) -> np.ndarray:
        engine = self._engine()
        rows = [view_features(engine, pixels[i:i + self.batch_size].astype(np.float32), self.views)
                for i in range(0, len(pixels), self.batch_size)]
        return np.concatenate(rows).reshape(len(pixels), -1).astype(np.float32)

    def _cached_rows(self, paths: list[Path]) -> dict[int, np.ndarray]:
        """Rows of ``paths`` held (pass 0) by finished stores in ``cache`` with these settings."""
        wanted = {str(path): i for i, path in enumerate(paths)}
        wanted_settings = {k: v for k, v in self.spec_.settings().items()
                           if k in ("image_size", "pooling", "precision", "views")}
        identity = self.spec_.weights.identity
        found = {}
        for manifest_path in sorted(Path(self.cache).expanduser().glob("*/manifest.json")):
            try:
                store = FeatureStore(manifest_path.parent)
            except FeatureError:
                continue  # an unfinished or damaged store is not a source of truth
            config = {"views": 1, **store.manifest["config"]}
            if ({k: config.get(k) for k in wanted_settings} != wanted_settings
                    or store.manifest["weights"]["identity"] != identity):
                continue
            root = Path(store.manifest["data_root"])
            for split in store.splits:
                rows = store.split_rows(split, passes=False)
                hits = {}  # index in paths -> row in this split
                for row, source in enumerate(rows["sources"]):
                    index = wanted.get(str(root / store.manifest["sources"][source]["path"]))
                    if index is not None and index not in found:
                        hits.setdefault(index, row)
                if hits:
                    gathered = rows["features"][np.fromiter(hits.values(), dtype=np.int64)]
                    found.update(zip(hits, gathered.reshape(len(hits), -1)))
        return found


def _checked_pixels(X: np.ndarray) -> np.ndarray:
    """``X`` if it holds RGB images (n, height, width, 3) of values 0-255; else a ``FeatureError``."""
    if X.ndim != 4 or X.shape[-1] != 3:
        raise FeatureError("VGG16Features takes image paths or an array of RGB images of shape "
                           f"(n, height, width, 3). Received: an array of shape {X.shape}")
    if X.dtype.kind == "f" and X.size and 0 < X.max() <= 1 and X.min() >= 0:
        raise FeatureError("The images' values lie within 0-1; VGG16Features takes values 0-255, as "
                           "decoded from the files (multiply the array by 255).")
    return X


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    """An RGB array resized bilinearly to ``size`` x ``size``, as `features` resizes files."""
    from PIL import Image

    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).convert("RGB")
    return np.asarray(picture.resize((size, size), Image.BILINEAR), dtype=np.uint8)
