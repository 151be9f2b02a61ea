"""Rank fitted heads on one store and write the table as Markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = (  # (key in metrics.json, column title, format)
    ("accuracy", "accuracy", "{:.4f}"),
    ("balanced_accuracy", "balanced acc.", "{:.4f}"),
    ("macro_f1", "macro F1", "{:.4f}"),
    ("log_loss", "log loss", "{:.4f}"),
    ("fit_seconds", "fit s", "{:.2f}"),
    ("predict_ms_per_image", "predict ms/img", "{:.3f}"),
)


def rank(metrics_by_head: dict[str, dict]) -> list[dict]:
    """Rows best first: higher accuracy, then lower log loss."""
    ordered = sorted(metrics_by_head.items(),
                     key=lambda item: (-item[1]["accuracy"], item[1]["log_loss"]))
    return [{"rank": position, "head": head, **{key: m[key] for key, _, _ in COLUMNS}}
            for position, (head, m) in enumerate(ordered, start=1)]


def table_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["rank", "head"] + [title for _, title, _ in COLUMNS]
    body = [[str(row["rank"]), row["head"]] + [fmt.format(row[key]) for key, _, fmt in COLUMNS]
            for row in rows]
    return header, body


def to_markdown(rows: list[dict], title: str) -> str:
    header, body = table_cells(rows)
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def write_leaderboard(folder: Path, rows: list[dict], store_key: str, n_validation: int) -> None:
    title = f"Leaderboard: store {store_key}, {n_validation} validation images"
    (folder / "leaderboard.md").write_text(to_markdown(rows, title))
    (folder / "leaderboard.json").write_text(
        json.dumps({"store_key": store_key, "validation_images": n_validation, "rows": rows},
                   indent=1) + "\n")
