"""`compare`: fit every head on one store, rank them honestly, choose one, report.

The choice is made on the training rows only: each head's own cross-validated balanced accuracy
(``cv_score_``: a scikit-learn head's grouped search folds, the dense head's grouped holdout, the
ensemble's out-of-fold vote), so on a folder with a rare class a head that ignores it is not
chosen for the common classes' rows; validation is then the held-out figure of the head chosen,
not what chose it (picking the best validation accuracy and reporting it flatters the winner)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from features import FeatureStore
from features.calibration import model_identity
from heads._ensemble import MEMBER_HEADS
from pipeline.leaderboard import SIGNIFICANCE, mark_against_best, pairwise_tests, rank, write_leaderboard
from pipeline.metrics import classification_metrics
from pipeline.runs import PREDICTIONS_FILE, Run, class_probabilities, fit_run, resolved_final_fit

logger = logging.getLogger(__name__)


def compare_heads(store: FeatureStore, names: list[str], runs: Path, search: bool = True,
                  final_fit: str = "auto") -> dict:
    """Fit ``names`` on ``store`` (each refitted as ``final_fit`` asks, ``fit_run``) and write
    ``leaderboard.{md,json}``; return the board."""
    for name in names:  # before any fit
        resolved_final_fit(name, final_fit)
    fitted: dict[str, Run] = {}
    for name in sorted(names, key=lambda n: n == "ensemble"):  # the ensemble last: it reuses the others
        logger.info("fitting %s ...", name)
        members = {n: run for n, run in fitted.items() if n in MEMBER_HEADS} if name == "ensemble" else None
        fitted[name] = fit_run(store, name, {}, runs, search=search, members=members, final_fit=final_fit)
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
             "rows": rows, "pairwise": pairs, "chosen": choose(store, fitted, rows, pairs)}
    write_leaderboard(runs / store.key, board)
    return board


# compare's tie-break, simplest (and usually fastest) first: the same choice on every run, where
# fit seconds, the earlier tie-break, vary with the machine's load.
SIMPLER_FIRST = ("logreg", "svm", "dense", "ensemble", "finetune")


def simplicity_rank(head: str) -> int:
    return SIMPLER_FIRST.index(head) if head in SIMPLER_FIRST else len(SIMPLER_FIRST)


def choose(store: FeatureStore, fitted: dict[str, Run], rows: list[dict], pairs: list[dict]) -> dict:
    """The head with the best cross-validated balanced accuracy on the training rows (ties: the simpler head,
    ``SIMPLER_FIRST``), with its validation accuracy as the held-out figure, scored once on test if
    there is one.
    Where no head has a cross-validated score (searches off), the best validation accuracy, said so."""
    by_head = {row["head"]: row for row in rows}
    scored = {name: run.info["details"]["cv_score"] for name, run in fitted.items()
              if run.info["details"].get("cv_score") is not None}
    if scored:
        head = max(scored, key=lambda name: (scored[name], -simplicity_rank(name)))
        low, high = by_head[head]["intervals_95"]["accuracy"]
        why = (f"{head}: highest cross-validated balanced accuracy (the mean recall per class) on the training "
               f"rows ({scored[head]:.4f}; grouped search folds for logreg and svm, the grouped early-stopping "
               "holdout for dense, out-of-fold votes for the ensemble; ties broken by the simpler head). "
               "Its validation accuracy, "
               f"{by_head[head]['accuracy']:.4f} [{low:.3f}, {high:.3f}], is the held-out figure: validation "
               "took no part in the choice.")
        unscored = sorted(set(fitted) - set(scored))
        if unscored:
            why += f" Not candidates (no cross-validated score): {', '.join(unscored)}."
    else:
        head = rows[0]["head"]
        why = (f"{head}: highest validation accuracy ({rows[0]['accuracy']:.4f}, ties broken by lower log loss), "
               "since no head has a cross-validated score (searches off); that figure flatters the choice.")
    tied = [pair["b"] if pair["a"] == head else pair["a"] for pair in pairs
            if head in (pair["a"], pair["b"]) and pair["p"] >= SIGNIFICANCE]
    if tied:
        why += f" McNemar's test cannot tell it apart from {', '.join(tied)} on the validation images."
    refit = fitted[head].info.get("final_fit")
    if refit:
        why += (f" It was then refitted with the same choices on the training and validation rows ({refit['rows']}; "
                "--final-fit): predict and export use that refit, which no validation figure "
                "describes" + (", and which the test split scores." if "test" in store.splits else "."))
    chosen = {"head": head, "why": why, "cv_scores": scored, "final_fit": refit}
    if "test" in store.splits:
        test = store.split_arrays("test", passes=False)
        proba = class_probabilities(fitted[head].head, test["features"], len(store.class_names))
        chosen["test"] = classification_metrics(test["labels"], proba, store.class_names)
    return chosen
