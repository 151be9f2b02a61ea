"""How the ensemble chooses its voters: the validation accuracy each selection rule would have given.

Run: .venv/bin/python bench/ensemble_selection.py [--runs runs/accuracy]

Reads the ensemble runs that `bench/accuracy.py` wrote under ``--runs`` (every set, size and option
with an ensemble): each ensemble records every subset's out-of-fold accuracy and log loss on the
training rows (``cv_scores``), and each member its validation probabilities. For each rule below it
takes the subset the rule picks from those out-of-fold scores and scores the averaged validation
probabilities of that subset, so every rule is judged on the same fitted members. Validation takes
no part in any choice.

Rules:

- ``accuracy, then log loss`` (the ensemble's own): best out-of-fold accuracy, ties by lower log
  loss, then more members;
- ``accuracy, then more members``: ties go to the larger vote, then lower log loss;
- ``log loss``: lowest out-of-fold log loss alone;
- ``every member``: no selection.

Prints one line per ensemble run and the mean over them; writes nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PREDICTIONS = "validation_predictions.npz"
RULES = {
    "accuracy, then log loss": lambda s, k: (s["accuracy"], -s["log_loss"], k.count("+")),
    "accuracy, then more members": lambda s, k: (s["accuracy"], k.count("+"), -s["log_loss"]),
    "log loss": lambda s, k: -s["log_loss"],
}


def validation_accuracy(run: Path, subset: str) -> float:
    """Accuracy on validation of ``subset``'s members' probabilities averaged (their runs beside ``run``)."""
    saved = [np.load(run.parent / member / PREDICTIONS, allow_pickle=False) for member in subset.split("+")]
    proba = np.mean([s["proba"] for s in saved], axis=0)
    return float((proba.argmax(axis=1) == saved[0]["labels"]).mean())


def choices(run: Path) -> dict[str, str]:
    """Rule -> the subset it picks from the ensemble ``run``'s out-of-fold scores."""
    scores = json.loads((run / "run.json").read_text())["details"]["cv_scores"]
    picked = {rule: max(scores, key=lambda k: key(scores[k], k)) for rule, key in RULES.items()}
    return {**picked, "every member": max(scores, key=lambda k: k.count("+"))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "accuracy")
    args = parser.parse_args(argv)
    runs = sorted(path.parent for path in args.runs.glob("**/ensemble/run.json"))
    if not runs:
        raise SystemExit(f"No ensemble runs under {args.runs}: run bench/accuracy.py first.")
    names = [*RULES, "every member"]
    print("| run | " + " | ".join(names) + " |", "|---|" + "---|" * len(names), sep="\n")
    totals = {name: [] for name in names}
    for run in runs:
        cells = []
        for name, subset in choices(run).items():
            accuracy = validation_accuracy(run, subset)
            totals[name].append(accuracy)
            cells.append(f"{subset} {accuracy:.3f}")
        print(f"| {run.parent.relative_to(args.runs)} | " + " | ".join(cells) + " |")
    print(f"| mean of {len(runs)} | " + " | ".join(f"{np.mean(totals[n]):.4f}" for n in names) + " |")


if __name__ == "__main__":
    main()
