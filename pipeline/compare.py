"""`compare`: fit every head on one store, rank them honestly, choose one, report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from features import FeatureStore
from features.calibration import model_identity
from heads._ensemble import MEMBER_HEADS
from pipeline.leaderboard import mark_against_best, pairwise_tests, rank, write_leaderboard
from pipeline.metrics import classification_metrics
from pipeline.runs import PREDICTIONS_FILE, Run, class_probabilities, fit_run

logger = logging.getLogger(__name__)


def compare_heads(store: FeatureStore, names: list[str], runs: Path, search: bool = True) -> dict:
    """Fit ``names`` on ``store`` and write ``leaderboard.{md,json}``; return the board."""
    fitted: dict[str, Run] = {}
    for name in sorted(names, key=lambda n: n == "ensemble"):  # the ensemble last: it reuses the others
        logger.info("fitting %s ...", name)
        members = {n: run for n, run in fitted.items() if n in MEMBER_HEADS} if name == "ensemble" else None
        fitted[name] = fit_run(store, name, {}, runs, search=search, members=members)
    rows = rank({name: run.metrics for name, run in fitted.items()})
    for row in rows:  # the exact model scored: a later fit of the head has another identity
        row["model"] = model_identity(fitted[row["head"]].info["model_sha256"])
    correct = {}
    for name, run in fitted.items():
        saved = np.load(run.folder / PREDICTIONS_FILE, allow_pickle=False)
        correct[name] = saved["proba"].argmax(axis=1) == saved["labels"]
    pairs = pairwise_tests(correct)
    mark_against_best(rows, pairs)
    board = {"store_key": store.key, "validation_images": fitted[rows[0]["head"]].metrics["n_samples"],
             "rows": rows, "pairwise": pairs, "chosen": choose(store, fitted, rows)}
    write_leaderboard(runs / store.key, board)
    return board


def choose(store: FeatureStore, fitted: dict[str, Run], rows: list[dict]) -> dict:
    """The top head by validation accuracy (then log loss), scored once on test if there is one."""
    best = rows[0]
    tied = [r["head"] for r in rows[1:] if r.get("vs_best") == "~"]
    why = (f"{best['head']}: highest validation accuracy ({best['accuracy']:.4f}, ties broken by lower "
           "log loss).")
    if tied:
        why += f" McNemar's test cannot tell it apart from {', '.join(tied)} on these images."
    chosen = {"head": best["head"], "why": why}
    if "test" in store.splits:
        test = store.split_arrays("test", passes=False)
        proba = class_probabilities(fitted[best["head"]].head, test["features"], len(store.class_names))
        chosen["test"] = classification_metrics(test["labels"], proba, store.class_names)
    return chosen
