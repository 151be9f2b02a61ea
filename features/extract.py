"""Stage one: run the VGG16 base over a dataset's shards and write them to a store."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from features.augment import AugmentConfig, Augmenter, batch_seed
from features.calibration import ensure_int8_model
from features.dataset import Dataset
from features.engines import Engine, open_engine, view_features
from features.errors import FeatureError
from features.images import describe_error, load_pixels
from features.spec import BackboneSpec, Dtype, Pooling
from features.store import Shard, StoreWriter

DECODE_BATCHES = 8  # batches decoded together before the engine runs on them


@dataclass(frozen=True)
class ExtractConfig:
    """Everything about an extraction except the data: the backbone spec (which holds the
    weights) and how the store is laid out and checked."""

    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    passes: int = 0
    shard_size: int = 1024
    dtype: str | None = None  # None: float16 for block4_pool maps (half the disk), else float32
    max_bad: float = 0.01
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if self.dtype is None:
            maps = self.backbone.pooling == Pooling.BLOCK4_POOL
            object.__setattr__(self, "dtype", (Dtype.FLOAT16 if maps else Dtype.FLOAT32).value)
        object.__setattr__(self, "dtype", Dtype.parse(self.dtype, "dtype").value)

    @property
    def weights(self):
        return self.backbone.weights

    def to_dict(self) -> dict:
        """The manifest's ``config``: the backbone's settings and the store's, in one flat dict."""
        return {**self.backbone.settings(), "passes": self.passes, "shard_size": self.shard_size,
                "dtype": self.dtype, "max_bad": self.max_bad, "augment": asdict(self.augment)}


@dataclass
class ExtractResult:
    shards_written: int
    shards_reused: int


def plan_shards(dataset: Dataset, passes: int, shard_size: int) -> list[Shard]:
    """The fixed list of shards: every split at pass 0, training images again per pass."""
    plan = []
    for split in dataset.splits():
        indices = dataset.indices(split)
        for pass_index in range(passes + 1 if split == "train" else 1):
            for number, start in enumerate(range(0, len(indices), shard_size)):
                plan.append(Shard(split, pass_index, number, tuple(indices[start:start + shard_size])))
    return plan


def decode_paths(paths: list[Path], image_size: int, pool: ThreadPoolExecutor) -> list[tuple[np.ndarray | None, str]]:
    """(pixels, "") or (None, reason) for each of ``paths``, in order, decoded on ``pool``'s threads
    (Pillow releases the GIL while it decodes and resizes)."""
    def decode(path):
        try:
            return load_pixels(path, image_size), ""
        except Exception as error:  # any undecodable file is skipped with its reason
            return None, describe_error(error)

    return list(pool.map(decode, paths))


@dataclass
class ShardRows:
    """One computed shard, ready to write: aligned arrays plus the files it had to skip."""

    features: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    skipped: dict[str, str]


def store_engine(dataset: Dataset, spec: BackboneSpec, writer: StoreWriter) -> Engine:
    """The engine for a store; for int8, its calibrated model (re)installed first."""
    if spec.precision == "int8":
        ensure_int8_model(writer, dataset, spec)
    return open_engine(spec, writer.folder)


class Executor(Protocol):
    """Computes the given shards of a store and records each in ``writer`` (in plan order)."""

    def run(self, dataset: Dataset, config: ExtractConfig, writer: StoreWriter, todo: list[Shard],
            on_images: Callable[[int], None]) -> None: ...


@dataclass(frozen=True)
class LocalExecutor:
    """Computes the shards in this process, one after another, with one engine."""

    engine: Engine | None = None  # built for the store when not given

    def run(self, dataset: Dataset, config: ExtractConfig, writer: StoreWriter, todo: list[Shard],
            on_images: Callable[[int], None]) -> None:
        engine = self.engine or store_engine(dataset, config.backbone, writer)
        augmenter = Augmenter(config.augment) if config.passes else None  # Keras, only for passes
        for shard in todo:
            rows = compute_shard(dataset, shard, engine, augmenter, config, on_images)
            writer.write_shard(shard, rows.features, rows.labels, rows.sources, rows.skipped)


def extract(dataset: Dataset, config: ExtractConfig, writer: StoreWriter,
            on_images: Callable[[int], None] = lambda n: None, executor: Executor | None = None) -> ExtractResult:
    """Compute every shard that ``writer``'s store still lacks, then mark it complete.

    ``executor`` computes them (``LocalExecutor()`` when not given; ``DaskExecutor`` on a
    cluster); planning, the checks and completion are the same for every executor.
    ``on_images(n)`` is called as each batch of ``n`` images is done (for progress).
    """
    plan = plan_shards(dataset, config.passes, config.shard_size)
    todo = [shard for shard in plan if shard.name not in writer.done()]
    if todo:
        (executor or LocalExecutor()).run(dataset, config, writer, todo, on_images)
    _check_usable(dataset, writer.manifest, config.max_bad)
    writer.finish()
    return ExtractResult(len(todo), len(plan) - len(todo))


def compute_shard(dataset: Dataset, shard: Shard, engine: Engine, augmenter: Augmenter | None, config: ExtractConfig,
                  on_images: Callable[[int], None] = lambda n: None) -> ShardRows:
    """Features of one shard's sources, with the files that could not be read.

    Images are decoded ``DECODE_BATCHES`` batches at a time on every core, then run through
    the engine: the two take turns rather than overlap, because a decoder competing for the
    cores slowed OpenVINO by a third here, more than decoding costs on its own.
    """
    spec = config.backbone
    features, sources, skipped = [], [], {}
    batches = [shard.sources[i:i + spec.batch_size]
               for i in range(0, len(shard.sources), spec.batch_size)]
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for first in range(0, len(batches), DECODE_BATCHES):
            chunk = batches[first:first + DECODE_BATCHES]
            paths = [dataset.root / dataset.sources[i].path for batch in chunk for i in batch]
            decoded = iter(decode_paths(paths, spec.image_size, pool))
            for batch_number, batch in enumerate(chunk, start=first):
                pixels = [next(decoded) for _ in batch]
                good = [i for i, (image, _) in enumerate(pixels) if image is not None]
                skipped.update({dataset.sources[batch[i]].path: reason
                                for i, (image, reason) in enumerate(pixels) if image is None})
                if good:
                    images = np.stack([pixels[i][0] for i in good]).astype(np.float32)
                    if shard.pass_index > 0:
                        images = augmenter(images, batch_seed(spec.seed, shard.pass_index, shard.number,
                                                              batch_number))
                    features.append(view_features(engine, images, spec.views))
                    sources += [batch[i] for i in good]
                on_images(len(batch))
    rows = np.concatenate(features) if features else np.zeros((0, *spec.feature_shape), np.float32)
    source_array = np.asarray(sources, dtype=np.int64)
    labels = np.asarray([dataset.sources[i].label for i in sources], dtype=np.int32)
    return ShardRows(rows.astype(config.dtype), labels, source_array, skipped)


def check_unreadable(skipped: Sequence[tuple[str, str]], dataset: Dataset, max_bad: float) -> None:
    """Fail when more than ``max_bad`` of the dataset's files are among ``skipped``, (path, reason)
    pairs: the scan's ``dataset.unreadable`` before any work, every skipped file after it."""
    n_files = len(dataset.sources) + len(dataset.unreadable)
    if skipped and len(skipped) > max_bad * n_files:
        path, reason = skipped[0]
        raise FeatureError(
            f"{len(skipped)} of {n_files} images could not be read (more than "
            f"`max_bad` {max_bad:.0%}); first: {path} ({reason}). "
            "Fix or remove them, or raise `max_bad`."
        )


def _check_usable(dataset: Dataset, manifest: dict, max_bad: float) -> None:
    """Fail when too many files were unreadable or a split or class was left empty."""
    skipped = manifest["skipped"]
    check_unreadable([(entry["path"], entry["reason"]) for entry in skipped], dataset, max_bad)
    bad = {entry["path"] for entry in skipped}
    for split in dataset.splits():
        labels = {s.label for s in dataset.sources if s.split == split and s.path not in bad}
        if not labels:
            raise FeatureError(f"No readable image is left in the '{split}' split; see the "
                               "skipped files in the manifest.")
        if split == "train" and len(labels) < len(dataset.class_names):
            missing = [dataset.class_names[i] for i in range(len(dataset.class_names)) if i not in labels]
            raise FeatureError(f"No readable training image is left for class(es) "
                               f"{', '.join(missing)}; see the skipped files in the manifest.")
