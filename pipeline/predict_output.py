"""`predict`'s output formats: text, CSV and JSON, one record per image whatever its name."""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from pipeline.display import printable

TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def top_classes(probabilities: np.ndarray, class_names: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable (class, probability) pairs, most probable first (ties: class order)."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(class_names[i], float(probabilities[i])) for i in order]


def format_predictions(predictions, class_names: list[str], output_format: str, top_k: int = 1,
                       all_classes: bool = False) -> str:
    """All records in ``output_format`` (``text``, ``csv`` or ``json``), newline-terminated."""
    k = min(top_k, len(class_names))
    writer = {"text": _text, "csv": _csv, "json": _json}[output_format]
    return writer(predictions, class_names, k, all_classes)


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


def _csv(predictions, class_names, k, all_classes) -> str:
    """A header, then one row per image: path, class, probability[, class_2, probability_2 ...]
    [, one probability column per class], error. Names with commas, quotes or newlines are quoted."""
    header = ["path", "class", "probability"]
    header += [f"{column}_{rank}" for rank in range(2, k + 1) for column in ("class", "probability")]
    if all_classes:
        header += [f"p({printable(name)})" for name in class_names]
    buffer = io.StringIO()
    rows = csv.writer(buffer, lineterminator="\n")
    rows.writerow(header + ["error"])
    for p in predictions:
        if p.error is not None:
            rows.writerow([printable(p.path)] + [""] * (len(header) - 1) + [p.error])
            continue
        cells = [printable(p.path)]
        for name, probability in top_classes(p.probabilities, class_names, k):
            cells += [printable(name), f"{probability:.6f}"]
        if all_classes:
            cells += [f"{value:.6f}" for value in p.probabilities]
        rows.writerow(cells + [""])
    return buffer.getvalue()


def _json(predictions, class_names, k, all_classes) -> str:
    """A list of records: path, class, probability, top (the ``k`` best), probabilities (every
    class), error."""
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
        records.append(record)
    return json.dumps(records, indent=1) + "\n"
