"""`predict`'s output formats: text, CSV and JSON, one record per image whatever its name."""

from __future__ import annotations

import csv
import io
import json
from typing import Callable, Iterable

import numpy as np

from pipeline.display import printable

TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def top_classes(probabilities: np.ndarray, class_names: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable (class, probability) pairs, most probable first (ties: class order)."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(class_names[i], float(probabilities[i])) for i in order]


def write_predictions(batches: Iterable[list], class_names: list[str], output_format: str,
                      write: Callable[[str], None], top_k: int = 1, all_classes: bool = False) -> tuple[int, int]:
    """Each batch of records in ``output_format`` (``text``, ``csv`` or ``json``) passed to ``write``
    as it comes, so a run stopped halfway keeps what it predicted; (records, errors) written."""
    k = min(top_k, len(class_names))
    lines, opening, separator, closing = {
        "text": (_text, "", "", ""), "csv": (_csv, _csv_text([_csv_columns(class_names, k, all_classes)]), "", ""),
        "json": (_json, "[\n", ",\n", "\n]\n")}[output_format]
    write(opening)
    records = errors = 0
    for batch in batches:
        write((separator if records else "") + lines(batch, class_names, k, all_classes))
        records += len(batch)
        errors += sum(p.error is not None for p in batch)
    write(closing)
    return records, errors


def _text(predictions, class_names, k, all_classes) -> str:
    """Tab-separated; tabs, newlines and backslashes inside names are escaped as \\t, \\n, \\\\."""
    lines = []
    for p in predictions:
        fields = [printable(p.path).translate(TEXT_ESCAPES)]
        if p.error is not None:
            fields += ["ERROR", p.error.translate(TEXT_ESCAPES)]
        else:
            for name, probability in top_classes(p.probabilities, class_names, k):
                fields += [name.translate(TEXT_ESCAPES), f"{probability:.4f}"]
            if all_classes:
                fields += [f"{value:.4f}" for value in p.probabilities]
        lines.append("\t".join(fields))
    return "".join(line + "\n" for line in lines)


def _csv_columns(class_names, k, all_classes) -> list[str]:
    """path, class, probability[, class_2, probability_2 ...][, one probability column per class], error."""
    header = ["path", "class", "probability"]
    header += [f"{column}_{rank}" for rank in range(2, k + 1) for column in ("class", "probability")]
    if all_classes:
        header += [f"p({printable(name)})" for name in class_names]
    return header + ["error"]


def _csv(predictions, class_names, k, all_classes) -> str:
    """One row per image, under ``_csv_columns``. Names with commas, quotes or newlines are quoted."""
    width = len(_csv_columns(class_names, k, all_classes))
    rows = []
    for p in predictions:
        if p.error is not None:
            rows.append([printable(p.path)] + [""] * (width - 2) + [p.error])
            continue
        cells = [printable(p.path)]
        for name, probability in top_classes(p.probabilities, class_names, k):
            cells += [printable(name), f"{probability:.6f}"]
        if all_classes:
            cells += [f"{value:.6f}" for value in p.probabilities]
        rows.append(cells + [""])
    return _csv_text(rows)


def _csv_text(rows: list[list[str]]) -> str:
    """``rows`` as CSV lines, one writer for them all."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _json(predictions, class_names, k, all_classes) -> str:
    """Records (the elements of one JSON list): path, class, probability, top (the ``k`` best),
    probabilities (every class), error."""
    records = []
    for p in predictions:
        record = {"path": printable(p.path), "class": None, "probability": None, "top": [],
                  "probabilities": None, "error": p.error}
        if p.error is None:
            top = top_classes(p.probabilities, class_names, k)
            record.update({"class": printable(top[0][0]), "probability": top[0][1],
                           "top": [{"class": printable(name), "probability": value} for name, value in top],
                           "probabilities": {printable(name): float(value)
                                             for name, value in zip(class_names, p.probabilities)}})
        records.append(json.dumps(record, indent=1))
    return ",\n".join(records)
