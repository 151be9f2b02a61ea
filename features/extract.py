"""Stage one: run the VGG16 base over a dataset's shards and write them to a store."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from features.augment import AugmentConfig, Augmenter, batch_seed
from features.backbone import FeatureExtractor, Weights, build_backbone, feature_shape
from features.dataset import Dataset
from features.errors import FeatureError
from features.images import describe_error, load_pixels
from features.store import Shard, StoreWriter

DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class ExtractConfig:
    """Everything about an extraction except the data and the weights."""

    image_size: int = 224
    pooling: str = "avg"
    passes: int = 0
    shard_size: int = 1024
    batch_size: int = 32
    dtype: str = "float32"
    precision: str = "fp32"  # arithmetic of the convnet: fp32 or bf16 (resolved, never "auto")
    seed: int = 0
    max_bad: float = 0.01
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        return asdict(self)


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


def _decoded_images(dataset: Dataset, shards: list[Shard], image_size: int) -> Iterator:
    """(pixels, error) for every source of every shard, in order, decoded in parallel."""
    paths = [str(dataset.root / source.path) for source in dataset.sources]

    def decode(index):
        try:
            return load_pixels(paths[int(index)], image_size), b""
        except Exception as error:  # any undecodable file is skipped with its reason
            return np.zeros((image_size, image_size, 3), np.uint8), describe_error(error).encode()

    order = np.array([i for shard in shards for i in shard.sources], dtype=np.int64)
    images = tf.data.Dataset.from_tensor_slices(order).map(
        lambda i: tf.numpy_function(decode, [i], (tf.uint8, tf.string)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    return images.prefetch(256).as_numpy_iterator()


def extract(dataset: Dataset, config: ExtractConfig, weights: Weights, writer: StoreWriter,
            on_images: Callable[[int], None] = lambda n: None) -> ExtractResult:
    """Compute every shard that ``writer``'s store still lacks, then mark it complete.

    ``on_images(n)`` is called as each batch of ``n`` images is done (for progress).
    """
    if config.dtype not in DTYPES:
        raise FeatureError(f"--dtype must be one of {', '.join(DTYPES)}. Received: {config.dtype}")
    plan = plan_shards(dataset, config.passes, config.shard_size)
    todo = [shard for shard in plan if shard.name not in writer.done()]
    if todo:
        extractor = FeatureExtractor(build_backbone(config.image_size, config.pooling, weights, config.seed,
                                                    config.precision))
        augmenter = Augmenter(config.augment)
        decoded = _decoded_images(dataset, todo, config.image_size)
        for shard in todo:
            _extract_shard(dataset, shard, decoded, extractor, augmenter, config, writer, on_images)
    _check_usable(dataset, writer.manifest, config.max_bad)
    writer.finish()
    return ExtractResult(len(todo), len(plan) - len(todo))


def _extract_shard(dataset, shard, decoded, extractor, augmenter, config, writer, on_images):
    features, sources, skipped = [], [], {}
    batches = [shard.sources[i:i + config.batch_size]
               for i in range(0, len(shard.sources), config.batch_size)]
    for batch_number, batch in enumerate(batches):
        pixels, errors = zip(*(next(decoded) for _ in batch))
        images = np.stack(pixels).astype(np.float32)
        if shard.pass_index > 0:
            images = augmenter(images, batch_seed(config.seed, shard.pass_index, shard.number, batch_number))
        good = [i for i, error in enumerate(errors) if not error]
        for i, error in enumerate(errors):
            if error:
                skipped[dataset.sources[batch[i]].path] = error.decode()
        if good:
            features.append(extractor(images[good]))
            sources += [batch[i] for i in good]
        on_images(len(batch))
    shape = feature_shape(config.image_size, config.pooling)
    rows = np.concatenate(features) if features else np.zeros((0, *shape), np.float32)
    source_array = np.asarray(sources, dtype=np.int64)
    labels = np.asarray([dataset.sources[i].label for i in sources], dtype=np.int32)
    writer.write_shard(shard, rows.astype(config.dtype), labels, source_array, skipped)


def _check_usable(dataset: Dataset, manifest: dict, max_bad: float) -> None:
    """Fail when too many files were unreadable or a split or class was left empty."""
    skipped = manifest["skipped"]
    n_files = len(dataset.sources) + len(dataset.unreadable)
    if skipped and len(skipped) > max_bad * n_files:
        raise FeatureError(
            f"{len(skipped)} of {n_files} images could not be read (more than "
            f"--max-bad {max_bad:.0%}); first: {skipped[0]['path']} ({skipped[0]['reason']}). "
            "Fix or remove them, or raise --max-bad."
        )
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
