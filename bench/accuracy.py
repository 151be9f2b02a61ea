"""Accuracy ablation: what each option of issue 13 buys, and what it costs.

Run: make accuracy  (or .venv/bin/python bench/accuracy.py --help)

For each data set (default: ../shared/data/cats_and_dogs_filtered and ../shared/data/monkeys_10),
builds the feature stores an option needs with the `features` command (real weights, 224 px or
``--image-size``, one fixed --precision so that stores differ only in the option; the wall time of
the command that computed a store is kept in <cache>/accuracy-timings.json and reused when the
store already exists), then fits the heads each option asks for on its store (`pipeline.runs.fit_run`,
the same code `compare` runs: searches on training rows only, scored once on validation) and
writes one table: data set x option x head, accuracy with its 95% bootstrap interval, log loss,
ECE, extraction seconds, store MB and fit seconds (an ensemble's includes its members').

Options (each alone against the baseline, then the defaults, then the best combination):
- recipe: the reference a user would write in an afternoon, the Keras blog's top model on the
  flattened block5_pool maps (Flatten, Dense 256 relu, Dropout 0.5, softmax; RMSprop, 50 epochs,
  batch 16) trained on every training row (a new store, --pooling none); one row a seed with
  ``--recipe-seeds N``.
- baseline: the plain recipe as main had it before issue 13: logreg, svm (Platt scaling of
  SVC's one-vs-one scores), dense (early stopping on a held-out 20%, never refitted); views 1,
  no augmentation.
- dense refit: dense picks its epochs on the grouped holdout, then refits on every row.
- sqrt_l2: signed square root + L2 normalisation searched (with the usual space) in logreg, svm.
- svm ovo temperature / svm ovr sigmoid / svm ovr temperature: the SVM's probabilities from
  temperature scaling and/or one-vs-rest SVCs instead (grouped calibration folds).
- ensemble: soft vote of the baseline heads, voters chosen by grouped CV on training rows.
- views 2: features of each image and its mirror, averaged (a new store).
- passes 2: two augmented passes over training images (a new store; not run unless asked).
- avgmax: the baseline heads on average and max pooling side by side (a new store, 1,024 floats
  an image, the same extraction).
- defaults (avg): every head (and the ensemble) as `compare` fits it, on the avg-pooled store.
- best: those heads on the views 2 store (avg pooling).
- defaults: those heads on the avgmax store (the default pooling before blocks).
- defaults int8: those heads on the avgmax store extracted in int8 (what `auto` picks on CPUs
  with VNNI or AMX), the accuracy guard at the defaults.
- quality max: those heads on 320 px, views 2, avgmax (`QUALITY=max`; 320 px is not the 224 px
  of the other rows: a larger input, about 2x the extraction per view).
- finetune: the finetune head (block 5 trained from ImageNet, with a softmax top) on the
  block4_pool maps (a new store, float16).
- finetune passes 2: the same with two augmented passes as extra rows (not run unless asked).
- defaults (block 5): the defaults on a `--pooling blocks` store's block 5 columns (average and max:
  the default avgmax store's features, from the same pass), groups not searched.
- views 2 (block 5): the same on a blocks store with --views 2.
- blocks: every head as `compare` fits it on a blocks store (the defaults since blocks became the
  default pooling): logreg and svm choose block 5 or blocks 4 and 5 by their search on training
  rows, dense takes block 5. Before, every head searched five choices of groups and logreg and svm
  the normalisation too (bench/results/accuracy-2026-12-03.md).
- blocks views 2: the same with --views 2.
- blocks passes 2: the same with two augmented passes over the training photos as extra rows (an
  image's passes held out together in every search; not run unless asked).
- defaults now (block 5): `defaults (block 5)` with logreg's signed square root + L2 normalisation
  (so also in the ensemble): the defaults just before blocks became the default pooling.
- blocks 4+5: every head on a blocks store's block 4 and block 5 columns (average and max), groups
  not searched, normalisation as by default.

- bilinear: every head as `compare` fits it on a `--pooling bilinear` store (blocks' columns and
  block 5's compact bilinear group, which logreg and svm may add to blocks 4 and 5 by their search).

``--per-class N`` also runs every option on N training photos a class (drawn with a fixed seed) and
every validation photo of each set: a folder of links to them, as a user's copy of fewer photos
would be, extracted like any other (0: every photo).

Writes bench/results/accuracy-<date>.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = ROOT.parent / "shared"
DATASETS = [SHARED / "data" / "cats_and_dogs_filtered", SHARED / "data" / "monkeys_10"]
WEIGHTS = SHARED / "weights" / "vgg16_notop.weights.h5"
TIMINGS = "accuracy-timings.json"

from heads import LogRegHead, SVMHead  # noqa: E402  (after sys.path)
from pipeline.runs import BLOCK5, COLUMN_CHOICES  # noqa: E402

SEARCH_SPACES = {"logreg": LogRegHead.default_search_space, "svm": SVMHead.default_search_space}

# main before issue 13: Platt scaling on SVC's one-vs-one scores, no normalisation searched,
# dense never refitted. Each option changes one thing against it.
MAIN_SVM = {"one_vs_rest": False, "calibration": "sigmoid", "normalize": "none", "search_space": SEARCH_SPACES["svm"]}
BASELINE = {"logreg": {}, "svm": MAIN_SVM, "dense": {"refit": False}}
SQRT_L2_SPACE = {"normalize": ["none", "sqrt_l2"]}
DEFAULT_HEADS = {"logreg": {}, "svm": {}, "dense": {}, "ensemble": {}}
# The defaults on a blocks store's block 5 columns only, unnormalised for logreg: the very features and
# heads of the default avgmax store (the same pass; the groups not searched), beside the searched groups.
BLOCK5_HEADS = {"logreg": {"columns": BLOCK5, "normalize": "none"}, "svm": {"columns": BLOCK5},
                "dense": {"columns": BLOCK5}, "ensemble": {}}
BLOCKS45 = COLUMN_CHOICES[1]  # the mid-level parts and textures beside block 5
# option -> (store, {head: params}); "ensemble" reuses the option's other heads as its members.
OPTIONS = {
    "recipe": ("maps", {"recipe": {}}),
    "baseline": ("base", BASELINE),
    "dense refit": ("base", {"dense": {"refit": True}}),
    "sqrt_l2": ("base", {"logreg": {"search_space": {**SEARCH_SPACES["logreg"], **SQRT_L2_SPACE}},
                         "svm": {**MAIN_SVM, "search_space": {**SEARCH_SPACES["svm"], **SQRT_L2_SPACE}}}),
    "svm ovo temperature": ("base", {"svm": {**MAIN_SVM, "calibration": "temperature"}}),
    "svm ovr sigmoid": ("base", {"svm": {**MAIN_SVM, "one_vs_rest": True}}),
    "svm ovr temperature": ("base", {"svm": {**MAIN_SVM, "one_vs_rest": True, "calibration": "temperature"}}),
    "ensemble": ("base", {**BASELINE, "ensemble": {}}),
    "views 2": ("views2", BASELINE),
    "passes 2": ("passes2", BASELINE),
    "avgmax": ("avgmax", BASELINE),
    "defaults (avg)": ("base", DEFAULT_HEADS),
    "best": ("views2", DEFAULT_HEADS),
    "defaults": ("avgmax", DEFAULT_HEADS),
    "defaults int8": ("avgmax-int8", DEFAULT_HEADS),
    "quality max": ("quality", DEFAULT_HEADS),
    "finetune": ("block4", {"finetune": {}}),
    "finetune passes 2": ("block4-passes2", {"finetune": {}}),
    "defaults (block 5)": ("blocks", BLOCK5_HEADS),
    "views 2 (block 5)": ("blocks-views2", BLOCK5_HEADS),
    "blocks": ("blocks", DEFAULT_HEADS),
    "blocks views 2": ("blocks-views2", DEFAULT_HEADS),
    "blocks passes 2": ("blocks-passes2", DEFAULT_HEADS),
    "defaults now (block 5)": ("blocks", {**BLOCK5_HEADS, "logreg": {"columns": BLOCK5, "normalize": "sqrt_l2"}}),
    "blocks 4+5": ("blocks", {"logreg": {"columns": BLOCKS45}, "svm": {"columns": BLOCKS45}, "dense": {"columns": BLOCKS45},
                              "ensemble": {}}),
    "bilinear": ("bilinear", DEFAULT_HEADS),
}
NOT_BY_DEFAULT = ("passes 2", "finetune passes 2", "blocks passes 2")  # the slowest stores: run when asked
STORES = {"base": ["--pooling", "avg"], "views2": ["--pooling", "avg", "--views", "2"],
          "passes2": ["--pooling", "avg", "--passes", "2"], "avgmax": ["--pooling", "avgmax"],
          "quality": ["--image-size", "320", "--pooling", "avgmax", "--views", "2"],
          "maps": ["--pooling", "none", "--dtype", "float16"],
          "avgmax-int8": ["--pooling", "avgmax", "--precision", "int8"],  # the last --precision wins
          "block4": ["--pooling", "block4_pool"], "block4-passes2": ["--pooling", "block4_pool", "--passes", "2"],
          "blocks": ["--pooling", "blocks"], "blocks-views2": ["--pooling", "blocks", "--views", "2"],
          "blocks-passes2": ["--pooling", "blocks", "--passes", "2"],
          "bilinear": ["--pooling", "bilinear"]}


def subset_folder(data: Path, per_class: int, cache: Path, seed: int = 0) -> Path | None:
    """A ``train/`` + ``validation/`` folder under ``cache`` of links to ``per_class`` of ``data``'s
    training photos a class (drawn with ``seed``) and every validation photo; None when no class has
    more than ``per_class`` training photos (the subset would be the whole set)."""
    from features.dataset import scan_dataset

    dataset = scan_dataset(data)
    training = {label: [s for s in dataset.sources if s.split == "train" and s.label == label]
                for label in range(len(dataset.class_names))}
    if max(len(sources) for sources in training.values()) <= per_class:
        return None
    rng = np.random.default_rng(seed)
    chosen = [sources[i] for sources in training.values()
              for i in sorted(rng.choice(len(sources), min(per_class, len(sources)), replace=False))]
    chosen += [source for source in dataset.sources if source.split == "validation"]
    folder = cache / "subsets" / f"{data.name}-{per_class}-a-class"
    for source in chosen:
        split = "train" if source.split == "train" else "validation"
        link = folder / split / dataset.class_names[source.label] / Path(source.path).name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to((data / source.path).resolve())
    return folder


def build_store(data: Path, store: str, args) -> dict:
    """Run `features` for ``store``'s options; return key, extraction seconds and store MB."""
    size = [] if "--image-size" in STORES[store] else ["--image-size", str(args.image_size)]
    command = [sys.executable, "-m", "pipeline", "features", "--data", str(data), "--weights", str(args.weights),
               "--precision", args.precision, "--cache", str(args.cache), *size, *STORES[store]]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"features failed for {data.name} {store}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    # the key from the command's own summary: LATEST may be another concurrent run's
    key = re.findall(r"Store ([0-9a-f]{16})", result.stdout + result.stderr)[-1]
    timings_file = args.cache / TIMINGS
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    if "Computed" in result.stdout + result.stderr or key not in timings:  # this run extracted it
        timings[key] = {"seconds": seconds, "data": data.name, "store": store, "measured": str(datetime.date.today()),
                        "resumed": "Resuming" in result.stdout + result.stderr}
        timings_file.write_text(json.dumps(timings, indent=1))
    folder = args.cache / key
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"key": key, "extraction_seconds": timings[key]["seconds"], "store_mb": size / 2 ** 20}


def fit_recipe(store, seed: int = 0) -> dict:
    """The recipe trained on every training row from ``seed``, scored on validation; the metrics
    `compare` reports."""
    from pipeline.metrics import classification_metrics

    train, validation = store.split_arrays("train"), store.split_arrays("validation")
    started = time.perf_counter()
    model = train_recipe(train["features"], train["labels"], len(store.class_names), seed)
    seconds = time.perf_counter() - started
    proba = model.predict(validation["features"], verbose=0).astype(np.float64)
    return {**classification_metrics(validation["labels"], proba, store.class_names), "fit_seconds": seconds}


def train_recipe(features: np.ndarray, labels: np.ndarray, classes: int, seed: int):
    """The Keras blog's top model on the flattened maps (``labels``: class indices), trained for its
    50 epochs (no early stopping) from ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(features.shape[1:]), keras.layers.Flatten(),
                              keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.5),
                              keras.layers.Dense(classes, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    model.fit(features, labels, epochs=50, batch_size=16, verbose=0)
    return model


def fit_option(store_info: dict, option: str, heads: dict, args, data_name: str) -> list[dict]:
    from features import FeatureStore
    from pipeline.runs import fit_run
    store = FeatureStore(args.cache / store_info["key"])
    runs = args.runs / data_name / option.replace(" ", "-")
    fitted, rows = {}, []
    if "recipe" in heads:  # one row a seed: its single training run moves by points between seeds
        heads = {**{f"recipe seed {seed}" if seed else "recipe": {"seed": seed} for seed in range(args.recipe_seeds)},
                 **{head: params for head, params in heads.items() if head != "recipe"}}
    for head, params in heads.items():
        members = {n: r for n, r in fitted.items() if n in ("logreg", "svm", "dense")} if head == "ensemble" else None
        print(f"  {data_name} / {option} / {head} {params or ''}", flush=True)
        if head.startswith("recipe"):
            m = fit_recipe(store, params["seed"])
            details = f"the Keras blog's top model, 50 epochs on every training row, seed {params['seed']}"
        else:
            # validation scores the head fitted on training rows: the refit on validation would add time alone
            run = fitted[head] = fit_run(store, head, dict(params), runs, search=True, members=members, final_fit="train")
            m, details = run.metrics, run.info["details"]
        rows.append({
            "data": data_name, "option": option, "head": head, "params": params,
            "accuracy": m["accuracy"], "accuracy_95": m["intervals_95"]["accuracy"],
            "log_loss": m["log_loss"], "ece": m["ece"], "fit_seconds": m["fit_seconds"],
            "extraction_seconds": store_info["extraction_seconds"], "store_mb": store_info["store_mb"],
            "store_key": store_info["key"], "validation_images": m["n_samples"],
            "details": details,
        })
        print(f"    accuracy {m['accuracy']:.4f} log loss {m['log_loss']:.3f} ECE {m['ece']:.3f} "
              f"fit {m['fit_seconds']:.1f}s", flush=True)
    return rows


def markdown(rows: list[dict], args) -> str:
    lines = [f"# Accuracy ablation ({datetime.date.today()})", "",
             f"`{' '.join(sys.argv)}`; real weights, {args.image_size} px (320 for quality max), `--precision {args.precision}`. Extraction "
             "seconds are the wall time of the `features` command that built the store (CPU shared with "
             "other work); fit seconds include the search (and an ensemble's members).", ""]
    for data in dict.fromkeys(r["data"] for r in rows):
        lines += [f"## {data}", "",
                  "| option | head | accuracy [95% CI] | log loss | ECE | extraction s | store MB | fit s |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["data"] == data):
            low, high = r["accuracy_95"]
            lines.append(f"| {r['option']} | {r['head']} | {r['accuracy']:.3f} [{low:.3f}, {high:.3f}] | "
                         f"{r['log_loss']:.3f} | {r['ece']:.3f} | {r['extraction_seconds']:.0f} | "
                         f"{r['store_mb']:.1f} | {r['fit_seconds']:.1f} |")
        lines += ["", *chosen_lines([r for r in rows if r["data"] == data]), ""]
    return "\n".join(lines)


def chosen_lines(rows: list[dict]) -> list[str]:
    """Per option, the head `compare` chooses (best cross-validated accuracy on training rows, ties:
    the simpler head) with its validation accuracy, beside the best validation accuracy."""
    from pipeline.compare import simplicity_rank

    lines = ["| option | compare's choice (CV accuracy on training rows) | its validation accuracy | best validation |",
             "|---|---|---|---|"]
    for option in dict.fromkeys(r["option"] for r in rows):
        scored = [r for r in rows if r["option"] == option and isinstance(r["details"], dict)
                  and r["details"].get("cv_score") is not None]
        if scored:
            chosen = max(scored, key=lambda r: (r["details"]["cv_score"], -simplicity_rank(r["head"])))
            best = max(r["accuracy"] for r in rows if r["option"] == option)
            lines.append(f"| {option} | {chosen['head']} ({chosen['details']['cv_score']:.3f}) | "
                         f"{chosen['accuracy']:.3f} | {best:.3f} |")
    return lines if len(lines) > 2 else []  # no head searched (the recipe alone): no table


def subsets(data: Path, args) -> list[Path]:
    """``data`` itself (for ``--per-class 0``) and its subset folder for every other ``--per-class``
    that leaves some photos out."""
    folders = [data if per_class == 0 else subset_folder(data, per_class, args.cache) for per_class in args.per_class]
    for per_class, folder in zip(args.per_class, folders):
        if folder is None:
            print(f"{data.name}: no class has more than {per_class} training photos; that subset is the whole set")
    return list(dict.fromkeys(folder for folder in folders if folder is not None))


def store_options(parser: argparse.ArgumentParser, datasets: list[Path] = DATASETS, precision: str = "auto") -> None:
    """Add the options of every bench script whose stores `build_store` makes: the data sets, the
    weights, one precision and one image size for every store, and the cache they go in."""
    parser.add_argument("--data", type=Path, nargs="+", default=datasets)
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--precision", default=precision, help=f"one precision for every store (default {precision})")
    parser.add_argument("--image-size", type=int, default=224, help="every store's but quality max's (default 224)")
    parser.add_argument("--cache", type=Path, default=ROOT / "cache" / "accuracy")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    store_options(parser, precision="bf16")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "accuracy")
    parser.add_argument("--options", nargs="+", default=[o for o in OPTIONS if o not in NOT_BY_DEFAULT],
                        choices=list(OPTIONS), help=f"options to run (default: all but {', '.join(NOT_BY_DEFAULT)})")
    parser.add_argument("--recipe-seeds", type=int, default=1, metavar="N",
                        help="train the recipe from seeds 0..N-1, one row each (default 1)")
    parser.add_argument("--per-class", type=int, nargs="+", default=[0], metavar="N",
                        help="training photos a class, drawn from each set (default 0: every photo)")
    parser.add_argument("--extract-only", action="store_true", help="build the stores, fit nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing hints, as `compare` hides them
    args.cache.mkdir(parents=True, exist_ok=True)
    args.data = [folder for data in args.data for folder in subsets(data, args)]
    needed = list(dict.fromkeys(OPTIONS[o][0] for o in args.options))
    stores = {(data.name, store): build_store(data, store, args) for data in args.data for store in needed}
    if args.extract_only:
        print(json.dumps({f"{d} {s}": v for (d, s), v in stores.items()}, indent=1))
        return
    rows = []
    for data in args.data:
        for option in args.options:
            store, heads = OPTIONS[option]
            rows += fit_option(stores[data.name, store], option, heads, args, data.name)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"accuracy-{datetime.date.today()}"
    stem.with_suffix(".json").write_text(json.dumps({"argv": sys.argv, "precision": args.precision,
                                                     "rows": rows}, indent=1) + "\n")
    table = markdown(rows, args)
    stem.with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
