"""What shapes the features: the choices, their defaults, and the one place where ``auto``
becomes a concrete precision and engine.

``BackboneSpec`` is built once (``BackboneSpec.resolve``) from what a user asked for; every
function that runs the base takes it, so the settings travel together and are checked once.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path

from features.errors import FeatureError
from features.weights import RANDOM_WEIGHTS, Weights


class Choice(str, Enum):
    """A closed set of string choices; the CLI derives its options from these."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)

    @classmethod
    def parse(cls, value, name: str):
        try:
            return cls(value)
        except ValueError:
            raise FeatureError(f"`{name}` must be one of {', '.join(cls.values())}. Received: {value!r}") from None


class Pooling(Choice):
    AVG = "avg"  # global average of the last block's maps: (512,)
    MAX = "max"
    AVGMAX = "avgmax"  # average and max side by side: (1024,)
    NONE = "none"  # the maps themselves: (size/32, size/32, 512)
    BLOCK4_POOL = "block4_pool"  # block 4's maps, (size/16, size/16, 512): what the finetune head trains block5 on
    BLOCKS = "blocks"  # average and max of blocks 3, 4 and 5 side by side, one pass: (2560,) in column groups; the default
    BILINEAR = "bilinear"  # blocks' columns and a compact bilinear pooling of block 5 (features.bilinear): (10752,)


MAP_STRIDES = {Pooling.NONE: 32, Pooling.BLOCK4_POOL: 16}  # the poolings that keep maps: input px per map cell
# The blocks whose pooled outputs (blockN_pool, after its max pool) ``blocks`` pooling keeps, and their channels.
BLOCK_CHANNELS = {"block3": 256, "block4": 512, "block5": 512}
GROUPED_POOLINGS = (Pooling.BLOCKS, Pooling.BILINEAR)  # blocks 3, 4 and 5's average and max, in column groups
BILINEAR_GROUP = "block5_bilinear"  # ``bilinear`` pooling's group after blocks' six
BILINEAR_COLUMNS = 8192  # its columns (bench/second_order.py: 2,048 kept about half the gain on dtd_6)


def column_groups(pooling: str) -> dict[str, list[int]] | None:
    """Named column groups of pooled features, name -> [start, stop): ``blocks``' six (block 3, 4
    and 5, each average then max), ``bilinear``'s the same and ``block5_bilinear``, None for the
    other poolings (one implicit group)."""
    if pooling not in GROUPED_POOLINGS:
        return None
    groups, start = {}, 0
    for block, channels in BLOCK_CHANNELS.items():
        for kind in ("avg", "max"):
            groups[f"{block}_{kind}"] = [start, start + channels]
            start += channels
    if pooling == Pooling.BILINEAR:
        groups[BILINEAR_GROUP] = [start, start + BILINEAR_COLUMNS]
    return groups


class Precision(Choice):
    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    INT8 = "int8"


class EngineName(Choice):
    AUTO = "auto"
    KERAS = "keras"
    OPENVINO = "openvino"


class Layout(Choice):
    AUTO = "auto"  # split folders when every subfolder is a split name, class folders when none is
    FLAT = "flat"  # every subfolder is a class
    SPLIT = "split"  # train/val/test folders, each with class folders


class Dtype(Choice):
    FLOAT32 = "float32"
    FLOAT16 = "float16"


DEFAULT_IMAGE_SIZE = 224
MIN_IMAGE_SIZE = 32  # VGG16's five poolings need 32 px
MAX_IMAGE_SIZE = 1024  # one 32-image batch at 1024 px already needs about 9 GB of activations
DEFAULT_BATCH_SIZE = 32
VIEWS = (1, 2)  # 1: the image; 2: the image and its horizontal mirror, features averaged
# int8 only: training images the quantization is calibrated on, by default the smallest count
# that held the accuracy guard on both shared sets (docs/benchmarks.md, "Calibration size").
DEFAULT_CALIBRATION_IMAGES = 64
RECORDED_CALIBRATION_IMAGES = 300  # what fp32 and bf16 stores record (part of their keys)

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products in hardware
# int8 runs fast on any x86 CPU with AVX2: without VNNI through u8 x s8 -> s16 products, which the
# calibrated model's 7-bit weights keep from saturating (features.calibration).
INT8_FALLBACK_FLAGS = ("avx2",)
INSTALL_ENGINE = "pip install openvino nncf (dependencies of bottleneck-heads that are missing here)"


@dataclass(frozen=True)
class BackboneSpec:
    """Everything that shapes one image's features, checked, with nothing left ``auto``."""

    weights: Weights = RANDOM_WEIGHTS
    image_size: int = DEFAULT_IMAGE_SIZE
    pooling: str = Pooling.BLOCKS.value
    views: int = 1
    precision: str = Precision.FP32.value  # arithmetic of the convnet: fp32, bf16 or int8
    engine: str = EngineName.KERAS.value  # what runs it: keras or openvino
    calibration_images: int = RECORDED_CALIBRATION_IMAGES
    seed: int = 0  # draws random weights (and seeds augmentation)
    batch_size: int = DEFAULT_BATCH_SIZE
    reason: str | None = field(default=None, compare=False)  # why `auto` chose the precision

    def __post_init__(self):
        if not (isinstance(self.image_size, int) and MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE):
            raise FeatureError(f"`image_size` must be an int from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}. "
                               f"Received: {self.image_size!r}")
        object.__setattr__(self, "pooling", Pooling.parse(self.pooling, "pooling").value)
        if self.views not in VIEWS:
            raise FeatureError(f"`views` must be 1 or 2. Received: {self.views!r}")
        precision = Precision.parse(self.precision, "precision")
        engine = EngineName.parse(self.engine, "engine")
        if precision is Precision.AUTO or engine is EngineName.AUTO:
            raise FeatureError("BackboneSpec takes a resolved precision and engine; build it with "
                               "BackboneSpec.resolve to choose them.")
        if engine is EngineName.KERAS and precision is Precision.INT8:
            raise FeatureError("int8 runs on the openvino engine only.")
        if self.pooling == Pooling.BLOCK4_POOL and self.views != 1:
            raise FeatureError(f"{Pooling.BLOCK4_POOL} keeps the maps, which a mirror's do not average with; "
                               "pass views 1 (augmented passes add mirrored rows: `passes`).")
        if self.pooling == Pooling.BLOCK4_POOL and precision is Precision.INT8:
            raise FeatureError(f"{Pooling.BLOCK4_POOL} maps are extracted in fp32 or bf16 (the int8 base is "
                               "calibrated for block 5's output); pass precision fp32, bf16 or auto.")
        object.__setattr__(self, "precision", precision.value)
        object.__setattr__(self, "engine", engine.value)
        for name in ("calibration_images", "batch_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise FeatureError(f"`{name}` must be a positive int. Received: {getattr(self, name)!r}")

    @classmethod
    def resolve(cls, precision: str = "auto", engine: str = "auto",
                calibration_images: int | None = None, **settings) -> "BackboneSpec":
        """The spec for what was asked, with ``auto`` precision and engine chosen for this CPU
        (``reason`` says why) and the calibration count set for int8 only (other stores keep
        the recorded default, and so their keys)."""
        chosen, reason = explain_precision(precision)
        if chosen == Precision.INT8 and reason and settings.get("pooling") == Pooling.BLOCK4_POOL:
            chosen = native_precision(cpu_flags())
            reason = (f"{Pooling.BLOCK4_POOL} maps are extracted in fp32 or bf16, and the CPU "
                      f"{'multiplies bfloat16 natively' if chosen == Precision.BF16 else 'has no native bfloat16'}")
        engine = resolve_engine(engine, chosen)
        if chosen == Precision.INT8:
            calibration_images = calibration_images or DEFAULT_CALIBRATION_IMAGES
        else:
            calibration_images = RECORDED_CALIBRATION_IMAGES
        return cls(precision=chosen, engine=engine, calibration_images=calibration_images,
                   reason=reason, **settings)

    def without_int8(self, why: str) -> "BackboneSpec":
        """This spec on the fastest path short of int8 (what ``auto`` falls back to when the
        calibrated model drifts from fp32 on this CPU), ``reason`` saying why."""
        precision, reason = fallback_precision(cpu_flags())
        return replace(self, precision=precision, engine=resolve_engine(EngineName.AUTO.value, precision),
                       calibration_images=RECORDED_CALIBRATION_IMAGES, reason=f"{why}; {reason}")

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one image's features: (512,), (1024,), (2560,) or (10752,) pooled, (s, s, 512) maps."""
        return feature_shape(self.image_size, self.pooling)

    @property
    def column_groups(self) -> dict[str, list[int]] | None:
        return column_groups(self.pooling)

    def settings(self) -> dict:
        """The spec as the manifest's ``config`` records it (weights are recorded apart)."""
        recorded = asdict(self)
        del recorded["weights"], recorded["reason"]
        return recorded

    @classmethod
    def from_settings(cls, settings: dict, weights: Weights) -> "BackboneSpec":
        """The spec a manifest's (or an export's) recorded ``config`` describes."""
        names = set(cls.__dataclass_fields__) - {"weights", "reason"}
        return cls(weights=weights, **{k: v for k, v in settings.items() if k in names})


def feature_shape(image_size: int, pooling: str) -> tuple[int, ...]:
    if pooling in MAP_STRIDES:
        side = image_size // MAP_STRIDES[pooling]
        return (side, side, 512)
    if pooling in GROUPED_POOLINGS:  # every group's columns side by side
        return (max(stop for _, stop in column_groups(pooling).values()),)
    return (1024,) if pooling == Pooling.AVGMAX else (512,)


# --- where `auto` is resolved ---------------------------------------------------------------


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux: no flags known, so no native bf16 is assumed
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def engine_installed() -> bool:
    """Whether OpenVINO and NNCF, which int8 needs, can be imported (without importing them)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("openvino", "nncf"))
    except (ImportError, ValueError):  # a module set to None in sys.modules: not importable
        return False


def native_precision(flags: set[str]) -> str:
    """bf16 where the CPU multiplies bfloat16 natively (AVX512_BF16 or AMX), else fp32."""
    return Precision.BF16.value if flags & set(BF16_CPU_FLAGS) else Precision.FP32.value


def cpu_class(flags: set[str]) -> str:
    """The class of int8 arithmetic a CPU with ``flags`` runs (what OpenVINO's kernels use):
    ``amx``, ``avx512_vnni``, ``avx_vnni``, ``avx512``, ``avx2`` or ``baseline``. The drift guard
    is measured once per class."""
    for name, flag in (("amx", "amx_int8"), ("avx512_vnni", "avx512_vnni"), ("avx_vnni", "avx_vnni"),
                       ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return name
    return "baseline"


def _named(flags: set[str]) -> str:
    return " and ".join(sorted(flag.upper() for flag in flags))


def choose_precision(flags: set[str], openvino_installed: bool) -> tuple[str, str]:
    """What ``precision="auto"`` runs on a CPU with ``flags``, and why, in words.

    int8 wherever OpenVINO is installed and the CPU has int8 dot products (AVX512_VNNI, AVX_VNNI
    or AMX) or AVX2: the whole command measured 3.5x the recipe on a Zen 4 (VNNI) and 2.6x on an
    AVX2-only EPYC, calibration included, the fastest path on both. Its accuracy is checked by the
    drift guard whenever a calibrated model meets a new CPU class (``features.drift``), which falls
    back to ``fallback_precision``. Else bf16 where the CPU multiplies bfloat16 natively, else fp32.
    """
    int8_flags = flags & set(INT8_CPU_FLAGS) or flags & set(INT8_FALLBACK_FLAGS)
    if int8_flags and openvino_installed:
        return "int8", f"the CPU has {_named(int8_flags)} and OpenVINO is installed"
    precision, reason = fallback_precision(flags)
    if int8_flags:
        reason += (f"; int8 would be faster (the CPU has {_named(int8_flags)}) but needs OpenVINO and "
                   f"NNCF, which are not installed: {INSTALL_ENGINE}")
    return precision, reason


def fallback_precision(flags: set[str]) -> tuple[str, str]:
    """The fastest precision short of int8, and why: bf16 where native, else fp32."""
    bf16_flags = flags & set(BF16_CPU_FLAGS)
    if bf16_flags:
        return "bf16", f"the CPU multiplies bfloat16 natively ({_named(bf16_flags)})"
    return "fp32", "the CPU has no native bfloat16 (AVX512_BF16, AMX)"


def explain_precision(precision: str) -> tuple[str, str | None]:
    """(``fp32``, ``bf16`` or ``int8``; why ``auto`` chose it, None when it was asked for)."""
    precision = Precision.parse(precision, "precision")
    if precision is not Precision.AUTO:
        return precision.value, None
    return choose_precision(cpu_flags(), engine_installed())


def resolve_precision(precision: str) -> str:
    """``fp32``, ``bf16`` or ``int8``; ``auto`` becomes what ``choose_precision`` picks here."""
    return explain_precision(precision)[0]


def choose_engine(precision: str, flags: set[str], openvino_installed: bool) -> str:
    """What ``engine="auto"`` runs ``precision`` on: OpenVINO for int8 (only it runs int8) and,
    when installed, for fp32 on x86 CPUs with AVX2 (1.5x Keras on an AVX2-only EPYC, as fast on a
    Zen 4) and for bf16 where the CPU multiplies bfloat16 natively (1.3x Keras on a Xeon with AMX,
    as fast on a Zen 4; both start without TensorFlow), else Keras (which emulates bf16 elsewhere)."""
    if precision == Precision.INT8:
        return EngineName.OPENVINO.value
    runs_natively = {Precision.FP32.value: "avx2" in flags, Precision.BF16.value: bool(flags & set(BF16_CPU_FLAGS))}
    if openvino_installed and runs_natively.get(precision, False):
        return EngineName.OPENVINO.value
    return EngineName.KERAS.value


def resolve_engine(engine: str, precision: str) -> str:
    """``keras`` or ``openvino`` for an already resolved ``precision``; ``auto`` is
    ``choose_engine``'s pick for this CPU."""
    engine = EngineName.parse(engine, "engine")
    if engine is EngineName.AUTO:
        engine = EngineName(choose_engine(precision, cpu_flags(), engine_installed()))
    if engine is EngineName.KERAS and precision == Precision.INT8:
        raise FeatureError("int8 runs on OpenVINO only: use `engine` openvino (or auto).")
    if engine is EngineName.OPENVINO and not engine_installed():
        reason = "int8 needs" if precision == Precision.INT8 else "the openvino engine needs"
        raise FeatureError(f"{reason} OpenVINO and NNCF, which are not installed: {INSTALL_ENGINE}.")
    return engine.value
