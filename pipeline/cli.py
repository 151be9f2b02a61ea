"""The typer app behind `bottleneck-heads` and `python -m pipeline`: one short function per command."""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import sys
import tempfile
import traceback
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer

from pipeline.packages import foreign_package

if problem := foreign_package():  # before importing a package that may not be this project's
    sys.exit(f"error: {problem}")

from features.extract import ExtractConfig  # its defaults (and BackboneSpec's) are the options' defaults
from features.spec import (DEFAULT_IMAGE_SIZE, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, BackboneSpec, Dtype, EngineName,
                           Layout, Pooling, Precision)
from heads import HEADS  # names only: the head modules are imported on first use
from pipeline import config
from pipeline.display import describe_fit, printable
from pipeline.quiet_tensorflow import mute_tensorflow_startup

DISTRIBUTION = "bottleneck-heads"
DEBUG_ENV = "BOTTLENECK_HEADS_DEBUG"  # set to 1 to see the traceback of an internal error

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Transfer learning with cached VGG16 bottleneck features and swappable heads.")


def expand_path(path: Optional[Path]) -> Optional[Path]:
    """``~`` expanded and relative paths made absolute, as a shell would for ``--opt ~/x``."""
    return None if path is None else Path(os.path.abspath(os.path.expanduser(path)))


def expand_paths(paths: Optional[list[Path]]) -> Optional[list[Path]]:
    return None if paths is None else [expand_path(path) for path in paths]


CacheOption = Annotated[Path, typer.Option(help="Folder of feature stores.", callback=expand_path)]
RunsOption = Annotated[Path, typer.Option(
    help="Folder of fitted heads, runs/<store key>/<head>/.", callback=expand_path)]
NoSearchOption = Annotated[bool, typer.Option(
    "--no-search", help="Skip the cross-validated hyperparameter search of scikit-learn heads.")]
StoreOption = Annotated[str, typer.Option(
    help="Store to use: 'latest' (the last `features` run), a store key, or a store folder.")]
SchedulerOption = Annotated[Optional[str], typer.Option(
    help="With --backend dask: the address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786. "
         "Unset: a LocalCluster of worker processes on this machine.")]
class FinalFit(str, Enum):
    auto = "auto"
    train = "train"
    train_validation = "train+validation"


FinalFitOption = Annotated[FinalFit, typer.Option(
    help="The photos the saved head (what predict and export use) learns from. train: the training "
         "photos it is tuned and scored with. train+validation: tuned, chosen and scored as with "
         "train, then refitted with the same choices on the validation photos too (0-3 points more "
         "accuracy on new photos, most on small folders; the validation figures describe the head "
         "before that refit). auto: train+validation for every head but finetune, which keeps train.")]
WeightsOverrideOption = Annotated[Optional[str], typer.Option(
    help="Weights file if the recorded one has moved (must be the same weights).")]


class Backend(str, Enum):
    local = "local"
    dask = "dask"


ExtractBackendOption = Annotated[Backend, typer.Option(
    help="Where shards are computed: local (this process), or dask (one task per shard on a Dask "
         "cluster, see --scheduler; the optional extra: pip install '.[dask]').")]
SearchBackendOption = Annotated[Backend, typer.Option(
    help="Where the scikit-learn heads' cross-validated search runs: local (this machine's cores), "
         "or dask (a Dask cluster, see --scheduler; the optional extra: pip install '.[dask]').")]


# The registered head names as a choice (click checks it: a usage error, exit 2, listing them).
HeadName = Enum("HeadName", {name: name for name in HEADS}, type=str)


class OutputFormat(str, Enum):
    text = "text"
    csv = "csv"
    json = "json"


def fail(message: str, code: int = 1):
    """One ``error:`` line on stderr, then exit with ``code`` (2: a usage error, as click's own)."""
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(code=code)


def usage_checked(check, *args):
    """``check(*args)``; a ``HeadError`` it raises (a bad head or ``--param``) is a usage error."""
    from heads import HeadError
    try:
        return check(*args)
    except HeadError as error:
        fail(as_options(str(error)), code=2)


def user_errors(command):
    """Report every failure as one line on stderr and a non-zero exit, never a traceback.

    Project errors (``FeatureError``, ``HeadError``, ``PipelineError``) and operating-system errors exit 1
    with their message. Anything else is a bug: one line, with the traceback written to
    a file (or shown when ``BOTTLENECK_HEADS_DEBUG=1``).
    """
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        mute_tensorflow_startup()
        from features import FeatureError
        from heads._base import HeadError
        from pipeline.errors import PipelineError
        show_library_logs()
        try:
            return command(*args, **kwargs)
        except (FeatureError, HeadError, PipelineError) as error:
            fail(as_options(str(error)))
        except OSError as error:
            where = f" ({error.filename})" if error.filename else ""
            fail(f"{error.strerror or error}{where}.")
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as error:  # a bug: say so in one line, keep the traceback
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            fail(f"internal error ({type(error).__name__}: {str(error)[:200]}); the traceback is in "
                 f"{_save_traceback()}. Please report it.")
    return wrapper


def _save_traceback() -> str:
    handle, path = tempfile.mkstemp(prefix="bottleneck-heads-", suffix=".log")
    with os.fdopen(handle, "w") as log:
        log.write(traceback.format_exc())
    return path


def say(message: str) -> None:
    typer.echo(printable(message), err=True)


PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)`")


@functools.cache
def option_names() -> frozenset[str]:
    """Every ``--option`` of every command, as ``--name``."""
    group = typer.main.get_command(app)
    return frozenset(option for command in group.commands.values() for param in command.params
                     for option in param.opts if option.startswith("--"))


def as_options(message: str) -> str:
    """A library message in CLI terms: each `parameter` it names that is an option of some
    command becomes ``--parameter``; other quoted words (`features`, a command) stay."""
    def option(match: re.Match) -> str:
        name = "--" + match.group(1).replace("_", "-")
        return name if name in option_names() else match.group(0)

    return PARAMETER.sub(option, message)


class _SayHandler(logging.Handler):
    """Library log records as the CLI's own lines on stderr (warnings prefixed)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = as_options(record.getMessage())
        say(f"warning: {message}" if record.levelno >= logging.WARNING else message)


def show_library_logs() -> None:
    """Show the packages' INFO messages (progress of stages, choices made) on stderr, once;
    hide TensorFlow's Python warnings."""
    for name in ("features", "heads", "pipeline"):
        logger = logging.getLogger(name)
        if not any(isinstance(handler, _SayHandler) for handler in logger.handlers):
            logger.addHandler(_SayHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
    # TensorFlow's own warnings (a prediction function retraced as compare fits one fresh network
    # after another) are hints for its developers, not for someone running the tool.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def warn_if_stale(feature_store) -> None:
    from pipeline.stores import stale_warning
    warning = stale_warning(feature_store)
    if warning:
        say(f"warning: {as_options(warning)}")


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """Refuse ``value`` outside [low, high] (or open ends), nan and inf, in one line."""
    if not math.isfinite(value) or (low is not None and (value < low or (low_open and value == low))) \
            or (high is not None and (value > high or (high_open and value == high))):
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        fail(f"{name} must be a finite number in {bounds}. Received: {value}", code=2)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"{DISTRIBUTION} {metadata.version(DISTRIBUTION)}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True, help="Print the version and exit.")] = False,
):
    """Transfer learning with cached VGG16 bottleneck features and swappable heads."""


@app.command()
@user_errors
def features(
    data: Annotated[Optional[Path], typer.Option(
        help="Photo folder: root/<class>/*, or split folders root/{train,val,test}/<class>/* "
             "or root/<class>/{train,val,test}/* (also training, valid, validation, dev, testing; "
             "any case). "
             f"Unset: the built-in digits demo, written to {config.DEMO_DIR}.",
        callback=expand_path)] = None,
    layout: Annotated[Layout, typer.Option(
        help="How --data is laid out: auto (split folders when every subfolder is a split name, "
             "class folders when none is, each read by split when it holds split folders alone), "
             "flat (every subfolder is a class, all its photos pooled), split.")] = Layout.AUTO,
    image_size: Annotated[Optional[int], typer.Option(
        help=f"Square input size in pixels, {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE}. "
             f"Default {DEFAULT_IMAGE_SIZE} ({config.DEMO_IMAGE_SIZE} for the demo).")] = None,
    pooling: Annotated[Pooling, typer.Option(
        help="blocks (the default): the average and max of blocks 3, 4 and 5 from the same pass, "
             "2,560 floats in named column groups; logreg and svm choose block 5 alone or blocks 4 "
             "and 5 by cross-validation, dense takes block 5; bilinear: those and a compact bilinear "
             "pooling of block 5 (8,192 floats more, for textures and fine-grained classes), which "
             "logreg and svm may add by cross-validation; avg/max: block 5's, 512 floats per "
             "image; avgmax: both, 1,024 floats; none: the whole map "
             "(7x7x512 at 224); block4_pool: block 4's maps (14x14x512 at 224), which the finetune "
             "head trains block 5 on.")] = Pooling(BackboneSpec.pooling),
    weights: Annotated[str, typer.Option(
        help="auto ($VGG16_WEIGHTS, else the ImageNet download; random weights only for the "
             "built-in demo), imagenet, none (random, on purpose), or a weights file path.")
    ] = config.DEFAULT_WEIGHTS,
    passes: Annotated[int, typer.Option(min=0, help="Extra augmented passes over training images.")] = ExtractConfig.passes,
    views: Annotated[int, typer.Option(
        min=1, max=2, help="1: each image; 2: each image and its horizontal mirror, features "
                           "averaged (twice the extraction time; part of the store key).")] = BackboneSpec.views,
    val_fraction: Annotated[float, typer.Option(
        help="Validation share, in (0, 1), for a flat root/<class>/ folder (stable hash of each "
             "path), or for split folders without a validation folder.")] = 0.2,
    shard_size: Annotated[int, typer.Option(min=1, help="Most rows per shard file.")] = ExtractConfig.shard_size,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per convnet batch.")] = BackboneSpec.batch_size,
    dtype: Annotated[Optional[Dtype], typer.Option(
        help="Precision the features are stored in. Default float32; float16 for block4_pool "
             "maps (half the disk).")] = None,
    precision: Annotated[Precision, typer.Option(
        help="Convnet arithmetic: fp32; bf16 (about 2x faster on CPUs with AVX512_BF16, 5-7x with "
             "AMX); int8 (OpenVINO, calibrated once per weights and image size and checked against fp32 "
             "on each CPU class; about 3.5-4x on CPUs with VNNI, 6.5-11x with AMX, 2.6x on AVX2 only); auto: int8 "
             "where the CPU has AVX2, VNNI or AMX (falling back, and saying why, if int8 drifts from "
             "fp32 there), else bf16 where the CPU has it natively, else fp32.")] = Precision.AUTO,
    engine: Annotated[EngineName, typer.Option(
        help="What runs the convnet: keras, openvino, or auto (openvino for int8, for fp32 on CPUs "
             "with AVX2 (1.5x Keras there) and for bf16 on CPUs with it natively (1.3x Keras with "
             "AMX); else keras).")] = EngineName.AUTO,
    calibration_images: Annotated[Optional[int], typer.Option(
        min=1, help="int8 only: training images the quantization is calibrated on, "
                    "at half the image size (default 64).")] = None,
    recalibrate: Annotated[bool, typer.Option(
        "--recalibrate", help="int8 only: calibrate on this data even if a calibrated model for "
                              "these weights and image size is cached.")] = False,
    seed: Annotated[int, typer.Option(min=0, help="Seeds augmentation (and random weights).")] = BackboneSpec.seed,
    max_bad: Annotated[float, typer.Option(
        help="Fail when more than this share (0 to 1) of files is unreadable.")] = ExtractConfig.max_bad,
    backend: ExtractBackendOption = Backend.local,
    scheduler: SchedulerOption = None,
    cache: CacheOption = config.CACHE_DIR,
):
    """Stage one: run the VGG16 base once over the images and cache features as .npy shards."""
    from features import resolve_weights, scan_dataset
    from pipeline.demo import write_digits
    from pipeline.stores import build_store, describe_skipped, manifest_summary, uneven_classes

    if image_size is not None:
        check_range("--image-size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    check_range("--max-bad", max_bad, 0, 1)
    check_range("--val-fraction", val_fraction, 0, 1, low_open=True, high_open=True)
    demo = data is None
    weights_found = resolve_weights(weights, random_fallback=demo)
    if demo:
        say(f"No --data given: using the built-in digits demo in {config.DEMO_DIR}.")
        data = write_digits(config.DEMO_DIR)
        image_size = image_size or config.DEMO_IMAGE_SIZE
    dataset = scan_dataset(data, val_fraction, layout=layout.value)
    for warning in dataset.warnings:
        say(f"warning: {as_options(warning)}")
    spec = BackboneSpec.resolve(
        precision=precision.value, engine=engine.value, calibration_images=calibration_images,
        weights=weights_found, image_size=image_size or DEFAULT_IMAGE_SIZE, pooling=pooling.value,
        views=views, seed=seed, batch_size=batch_size)
    if spec.reason:
        say(f"precision auto -> {spec.precision}: {spec.reason}")
    settings = ExtractConfig(backbone=spec, passes=passes, shard_size=shard_size, dtype=dtype and dtype.value,
                             max_bad=max_bad)
    try:
        store = build_store(dataset, settings, cache, backend=backend.value, scheduler=scheduler,
                            recalibrate=recalibrate)
    except KeyboardInterrupt:
        say("Interrupted: every finished shard is saved. Run the same command again to resume.")
        raise typer.Exit(code=130) from None
    for line in describe_skipped(store.manifest["skipped"]):
        say(line)
    say(manifest_summary(store))
    if uneven := uneven_classes(store):
        say(uneven)


@app.command()
@user_errors
def head(
    head: Annotated[HeadName, typer.Option(
        help="Head to fit (finetune on a block4_pool store).")] = HeadName("logreg"),
    param: Annotated[Optional[list[str]], typer.Option(
        help="Head hyperparameter as name=value; repeatable (e.g. --param C=0.5).")] = None,
    no_search: NoSearchOption = False,
    final_fit: FinalFitOption = FinalFit.auto,
    backend: SearchBackendOption = Backend.local,
    scheduler: SchedulerOption = None,
    store: StoreOption = "latest",
    cache: CacheOption = config.CACHE_DIR,
    runs: RunsOption = config.RUNS_DIR,
):
    """Stage two: fit one head on cached features and score it on the validation split; then (by
    default) refit it with the same choices on training and validation for predict and export."""
    from features.distributed import backend_client
    from heads import head_class, parse_params
    from pipeline.runs import fit_run
    from pipeline.stores import open_store

    head = head.value
    params = usage_checked(parse_params, head_class(head), param or [])
    feature_store = open_store(cache, store)
    warn_if_stale(feature_store)
    with backend_client(backend.value, scheduler):
        run = fit_run(feature_store, head, params, runs, search=not no_search, final_fit=final_fit.value)
    m = run.metrics
    say(f"{head}: accuracy {m['accuracy']:.4f}, balanced {m['balanced_accuracy']:.4f}, "
        f"macro F1 {m['macro_f1']:.4f}, log loss {m['log_loss']:.4f}, fit {m['fit_seconds']:.2f}s "
        f"-> {run.folder}")
    fitted = describe_fit(run.info["details"])
    if fitted:
        say(f"fitted: {fitted}")
    if run.info["final_fit"]:
        say(f"refitted with those choices on {run.info['final_fit']['rows']} training and validation rows "
            f"({run.info['final_fit']['seconds']:.2f}s): predict and export use that head, which the "
            "figures above do not describe")


def head_names(heads: str) -> list[str]:
    """The heads named by ``--heads`` (comma-separated), each checked."""
    from heads import HEADS, head_class

    names = [n.strip() for n in heads.split(",") if n.strip()]
    if not names:
        fail(f"--heads names no head; give a comma-separated list of {', '.join(HEADS)}, or all. "
             f"Received: {heads!r}", code=2)
    for name in names:
        usage_checked(head_class, name)
    return list(dict.fromkeys(names))


@app.command()
@user_errors
def compare(
    heads: Annotated[str, typer.Option(
        help="Comma-separated heads to fit, or 'all' (every head but finetune; on a block4_pool "
             "store, finetune).")] = "all",
    no_search: NoSearchOption = False,
    final_fit: FinalFitOption = FinalFit.auto,
    backend: SearchBackendOption = Backend.local,
    scheduler: SchedulerOption = None,
    store: StoreOption = "latest",
    cache: CacheOption = config.CACHE_DIR,
    runs: RunsOption = config.RUNS_DIR,
):
    """Fit every head on one store; rank them with 95% intervals and McNemar's tests; write
    leaderboard.{md,json} and report.{html,md}."""
    from rich.console import Console
    from rich.table import Table

    from features.distributed import backend_client
    from pipeline.compare import compare_heads
    from pipeline.leaderboard import compact_cells
    from pipeline.report import write_report
    from pipeline.runs import store_heads
    from pipeline.stores import open_store

    names = None if heads.strip() == "all" else head_names(heads)  # a usage error before the store
    feature_store = open_store(cache, store)
    names = names or store_heads(feature_store)
    warn_if_stale(feature_store)
    with backend_client(backend.value, scheduler):
        board = compare_heads(feature_store, names, runs, search=not no_search, final_fit=final_fit.value)

    header, body = compact_cells(board["rows"])
    table = Table(title=f"store {feature_store.key}: {board['validation_images']} validation images")
    for title in header:
        table.add_column(title, justify="left" if title == "head" else "right")
    for cells in body:
        table.add_row(*cells)
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    say(f"Chosen: {board['chosen']['why']}")
    if board["chosen"].get("test"):
        refitted = " (the head refitted on training and validation)" if board["chosen"]["final_fit"] else ""
        say(f"Test split{refitted}: accuracy {board['chosen']['test']['accuracy']:.4f}")
    report = write_report(feature_store, board, runs)
    say(f"Leaderboard and report written to {runs / feature_store.key}/ "
        f"(leaderboard.md, leaderboard.json, {report.name}, report.md)")


@app.command(epilog="Exit status: 0 every image classified; 1 an error, or no image could be read; "
                    "3 some images could not be read (each is a record with its error), the rest "
                    "classified.")
@user_errors
def predict(
    images: Annotated[list[Path], typer.Argument(
        help="Image files and/or folders of images.", callback=expand_paths)],
    head: Annotated[HeadName, typer.Option(help="Fitted head to use.")] = HeadName("logreg"),
    export: Annotated[Optional[Path], typer.Option(
        "--export", help="Use an exported head folder (from `export`) instead of --store/--head.",
        callback=expand_path)] = None,
    output_format: Annotated[OutputFormat, typer.Option(
        "--format", help="text: tab-separated path, class, probability (then the next classes with "
                         "--top-k); csv: with a header row; json: one list of records with every "
                         "class's probability.")] = OutputFormat.text,
    top_k: Annotated[int, typer.Option(min=1, help="Most probable classes per image to print.")] = 1,
    all_classes: Annotated[bool, typer.Option(
        "--all-classes", help="csv/text: also one probability column per class.")] = False,
    weights: WeightsOverrideOption = None,
    store: StoreOption = "latest",
    cache: CacheOption = config.CACHE_DIR,
    runs: RunsOption = config.RUNS_DIR,
):
    """Classify images with the store's exact VGG16 settings and a fitted head."""
    from pipeline.predict import Predictor, expand_image_paths, learnt_photos, learnt_photos_warning, predict_batches
    from pipeline.predict_output import write_predictions
    from pipeline.progress import progress
    from pipeline.runs import load_run
    from pipeline.stores import open_store, recorded_weights

    if export is not None:
        predictor = Predictor.from_export(export)
    else:
        feature_store = open_store(cache, store)
        run = load_run(runs, feature_store, head.value)
        predictor = Predictor.from_run(feature_store, run)
    paths = expand_image_paths(images)
    if export is None and (seen := learnt_photos_warning(paths, learnt_photos(feature_store, run))):
        say(f"warning: {seen}")
    batches = predict_batches(predictor, paths, recorded_weights(predictor.weights, weights))
    with progress(len(paths), "predict") as advance:
        records, failed = write_predictions(advanced(batches, advance), predictor.class_names,
                                            output_format.value, write_out, top_k, all_classes)
    if failed:
        say(f"{failed} of {records} image(s) could not be read.")
        raise typer.Exit(code=1 if failed == records else 3)


def advanced(batches: Iterator[list], advance: Callable[[int], None]) -> Iterator[list]:
    """``batches`` as they come, calling ``advance`` with each one's length once it is consumed."""
    for batch in batches:
        yield batch
        advance(len(batch))


def write_out(text: str) -> None:
    """``text`` on stdout at once, so records piped to a file are there if the run stops."""
    sys.stdout.write(text)
    sys.stdout.flush()


@app.command()
@user_errors
def export(
    head: Annotated[HeadName, typer.Option(help="Fitted head to export.")],
    out: Annotated[Path, typer.Option(
        help="NAME.keras: one Keras model, raw images in, probabilities out (dense, finetune and logreg); "
             "a folder for `predict --export` (logreg, svm and ensemble).", callback=expand_path)],
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an earlier export at --out (never anything else).")] = False,
    weights: WeightsOverrideOption = None,
    store: StoreOption = "latest",
    cache: CacheOption = config.CACHE_DIR,
    runs: RunsOption = config.RUNS_DIR,
):
    """Package a fitted head with its backbone settings so it can be used away from the store."""
    from pipeline.export import export_run
    from pipeline.runs import load_run
    from pipeline.stores import open_store

    feature_store = open_store(cache, store)
    written = export_run(feature_store, load_run(runs, feature_store, head.value), out, weights, force=force)
    say(f"Exported {head.value} to {written}")


@app.command()
@user_errors
def verify(
    store: StoreOption = "latest",
    cache: CacheOption = config.CACHE_DIR,
):
    """Re-check a store: every shard's sha256, row counts, labels, splits and the file list."""
    from features.verify import verify_store
    from pipeline.stores import open_store

    feature_store = open_store(cache, store, require_complete=False)
    folder, manifest = feature_store.folder, feature_store.manifest
    if not manifest.get("complete"):
        say(f"note: store {manifest['key']} is incomplete; rerun its `features` command to finish it.")
    problems = verify_store(folder, manifest)
    for problem in problems:
        typer.echo(printable(f"problem: {problem}"))
    if problems:
        fail(f"store {manifest['key']} failed verification with {len(problems)} problem(s).")
    rows = sum(entry["rows"] for entry in manifest["shards"])
    typer.echo(f"OK: store {manifest['key']}, {len(manifest['shards'])} shards, {rows} rows verified.")


def main() -> None:
    """The `bottleneck-heads` console script."""
    app(prog_name=DISTRIBUTION)


if __name__ == "__main__":  # pragma: no cover
    main()
