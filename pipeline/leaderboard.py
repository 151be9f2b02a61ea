"""Rank fitted heads on one store, test their differences, and write the table."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from features.store import atomic_write_bytes
from pipeline.runs import RUNS_FIX
from pipeline.stats import mcnemar

SIGNIFICANCE = 0.05
METRIC_COLUMNS = (  # (key in metrics.json, title); each shown with its 95% interval
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced acc."),
    ("macro_f1", "macro F1"),
    ("log_loss", "log loss"),
    ("ece", "ECE"),
)
COST_COLUMNS = (  # (key, title, format)
    ("fit_seconds", "fit s", "{:.2f}"),
    ("predict_ms_per_image", "predict ms/img", "{:.3f}"),
    ("model_bytes", "size KB", "{:.0f}"),
)


def rank(metrics_by_head: dict[str, dict]) -> list[dict]:
    """Rows best first: higher accuracy, then lower log loss."""
    ordered = sorted(metrics_by_head.items(),
                     key=lambda item: (-item[1]["accuracy"], item[1]["log_loss"]))
    rows = []
    for position, (head, m) in enumerate(ordered, start=1):
        row = {"rank": position, "head": head, **{key: m[key] for key, _ in METRIC_COLUMNS}}
        row["intervals_95"] = {key: m["intervals_95"][key] for key, _ in METRIC_COLUMNS}
        row.update({key: m[key] for key, _, _ in COST_COLUMNS})
        rows.append(row)
    return rows


def pairwise_tests(correct: dict[str, np.ndarray]) -> list[dict]:
    """McNemar's test for every pair of heads on the same validation images."""
    return [{"a": a, "b": b, **mcnemar(correct[a], correct[b])}
            for a, b in itertools.combinations(correct, 2)]


def mark_against_best(rows: list[dict], pairs: list[dict]) -> None:
    """Give each row ``vs_best``: '' for the best, '*' if significantly worse, '~' if not."""
    best = rows[0]["head"]
    p_by_pair = {frozenset((p["a"], p["b"])): p["p"] for p in pairs}
    for row in rows:
        if row["head"] == best:
            row["vs_best"], row["p_vs_best"] = "", None
        else:
            p = p_by_pair[frozenset((row["head"], best))]
            row["vs_best"], row["p_vs_best"] = ("*" if p < SIGNIFICANCE else "~"), p


def table_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["rank", "head", "vs best"] + [t for _, t in METRIC_COLUMNS] + [t for _, t, _ in COST_COLUMNS]
    body = []
    for row in rows:
        cells = [str(row["rank"]), row["head"], _p_text(row)]
        for key, _ in METRIC_COLUMNS:
            low, high = row["intervals_95"][key]
            cells.append(f"{row[key]:.4f} [{low:.3f}, {high:.3f}]")
        cells += [fmt.format(row[key] / (1024 if key == "model_bytes" else 1)) for key, _, fmt in COST_COLUMNS]
        body.append(cells)
    return header, body


def pairwise_cells(pairs: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["head A", "head B", "A right, B wrong", "B right, A wrong", "p", "test"]
    body = [[p["a"], p["b"], str(p["a_only"]), str(p["b_only"]), f"{p['p']:.4f}", p["test"]] for p in pairs]
    return header, body


def compact_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """A narrower table for terminals: accuracy with its interval, log loss, ECE, fit time."""
    header = ["rank", "head", "vs best", "accuracy [95% CI]", "log loss", "ECE", "fit s"]
    body = [[str(row["rank"]), row["head"], _p_text(row),
             "{:.4f} [{:.3f}, {:.3f}]".format(row["accuracy"], *row["intervals_95"]["accuracy"]),
             f"{row['log_loss']:.4f}", f"{row['ece']:.4f}", f"{row['fit_seconds']:.2f}"] for row in rows]
    return header, body


def _p_text(row: dict) -> str:
    return "best" if row["p_vs_best"] is None else f"{row['vs_best']} p={row['p_vs_best']:.3f}"


def markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(cells) + " |" for cells in body]


def to_markdown(board: dict) -> str:
    """The leaderboard, the pairwise tests and the test-split verdict as Markdown."""
    header, body = table_cells(board["rows"])
    lines = [f"# Leaderboard: store {board['store_key']}, {board['validation_images']} validation images",
             "", *markdown_table(header, body), "",
             "Intervals are 95% bootstrap percentiles over validation images. `vs best`: McNemar's "
             f"test against the top head; `*` differs at p < {SIGNIFICANCE}, `~` cannot be told apart.",
             "", "## Pairwise McNemar tests", "",
             *markdown_table(*pairwise_cells(board["pairwise"])),
             "", "## Chosen head", "", board["chosen"]["why"]]
    if board["chosen"].get("test"):
        test = board["chosen"]["test"]
        low, high = test["intervals_95"]["accuracy"]
        lines += ["", f"Scored once on the test split ({test['n_samples']} images): accuracy "
                      f"{test['accuracy']:.4f} [{low:.3f}, {high:.3f}], log loss {test['log_loss']:.4f}."]
    return "\n".join(lines) + "\n"


def write_leaderboard(folder: Path, board: dict) -> None:
    """Write ``leaderboard.md`` and ``leaderboard.json`` into ``folder``, each atomically."""
    atomic_write_bytes(folder / "leaderboard.md", to_markdown(board).encode(), RUNS_FIX)
    atomic_write_bytes(folder / "leaderboard.json", (json.dumps(board, indent=1) + "\n").encode(), RUNS_FIX)
