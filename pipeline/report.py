"""One self-contained HTML report (images embedded) and its Markdown twin for a compare run."""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import date
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the display-free backend)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from features import FeatureStore, load_pixels  # noqa: E402
from features.drift import describe_drift  # noqa: E402
from features.manifest import BACKBONE  # noqa: E402
from features.store import atomic_write_bytes  # noqa: E402
from pipeline.leaderboard import markdown_table, pairwise_cells, table_cells, to_markdown  # noqa: E402
from pipeline.runs import METRICS_FILE, PREDICTIONS_FILE, RUNS_FIX  # noqa: E402
from pipeline.stats import ECE_BINS  # noqa: E402

GALLERY_SIZE = 12
THUMBNAIL = 112
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;padding:0 1em;max-width:1200px;color:#222}
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:nth-child(2){text-align:left;overflow-wrap:break-word}
.figs img{max-width:min(380px,100%);margin:4px;vertical-align:top}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:12px;align-items:start}
.gallery figure{margin:0;font-size:12px;text-align:center}.gallery img{display:block;margin:0 auto}
.gallery figcaption{overflow-wrap:anywhere;color:#555}.gallery b{color:#222}"""


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return _data_uri(buffer.getvalue())


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body)
    return f'<div class="scroll"><table><tr>{head}</tr>{rows}</table></div>'


def confusion_figure(head: str, matrix: list[list[int]], class_names: list[str]) -> str:
    figure, axis = plt.subplots(figsize=(4, 3.5))
    skm.ConfusionMatrixDisplay(np.asarray(matrix), display_labels=class_names).plot(
        ax=axis, colorbar=False, include_values=len(class_names) <= 20)
    axis.set_title(f"{head}: confusion (validation)")
    return _png(figure)


def _scores(labels: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary: the positive class; more classes: one-vs-rest, micro-averaged."""
    if proba.shape[1] == 2:
        return labels == 1, proba[:, 1]
    onehot = np.eye(proba.shape[1], dtype=bool)[labels]
    return onehot.ravel(), proba.ravel()


def _distinct(predictions: dict[str, dict]) -> dict[str, dict]:
    """``predictions`` with heads of identical probabilities drawn once, named together (an
    ensemble that chose one member as "ensemble = svm"), so no curve hides another."""
    drawn: dict[str, dict] = {}
    for head, saved in predictions.items():
        same = next((name for name, other in drawn.items() if np.array_equal(other["proba"], saved["proba"])), None)
        if same is None:
            drawn[head] = saved
        else:
            drawn[f"{same} = {head}"] = drawn.pop(same)
    return drawn


def curve_figures(predictions: dict[str, dict]) -> tuple[str, str]:
    roc, roc_axis = plt.subplots(figsize=(4.5, 4))
    pr, pr_axis = plt.subplots(figsize=(4.5, 4))
    for head, saved in _distinct(predictions).items():
        truth, score = _scores(saved["labels"], saved["proba"])
        fpr, tpr, _ = skm.roc_curve(truth, score)
        roc_axis.plot(fpr, tpr, label=f"{head} (AUC {skm.auc(fpr, tpr):.3f})")
        precision, recall, _ = skm.precision_recall_curve(truth, score)
        pr_axis.plot(recall, precision, label=f"{head} (AP {skm.average_precision_score(truth, score):.3f})")
    classes = next(iter(predictions.values()))["proba"].shape[1]
    averaged = "" if classes == 2 else f"\n{classes} classes one-vs-rest, micro-averaged"
    roc_axis.plot([0, 1], [0, 1], ":", color="grey")
    roc_axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC (validation){averaged}")
    pr_axis.set(xlabel="recall", ylabel="precision", title=f"Precision-recall (validation){averaged}")
    roc_axis.legend(fontsize=8)
    pr_axis.legend(fontsize=8)
    return _png(roc), _png(pr)


def reliability_figure(predictions: dict[str, dict]) -> str:
    """Accuracy against confidence per bin, and below it how many images each bin holds (a bin of a
    few images says little)."""
    figure, (axis, counts_axis) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True,
                                               gridspec_kw={"height_ratios": [3, 1.2]})
    edges = np.linspace(0, 1, ECE_BINS + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1 / ECE_BINS
    drawn = _distinct(predictions)
    for k, (head, saved) in enumerate(drawn.items()):
        confidence = saved["proba"].max(axis=1)
        correct = saved["proba"].argmax(axis=1) == saved["labels"]
        which = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
        counts = np.bincount(which, minlength=ECE_BINS)
        filled = counts > 0
        accuracy = np.bincount(which, correct, ECE_BINS)[filled] / counts[filled]
        line, = axis.plot(centres[filled], accuracy, "o-", label=head)
        bar_width = width * 0.8 / len(drawn)
        counts_axis.bar(edges[:-1] + width * 0.1 + bar_width * (k + 0.5), counts, bar_width, color=line.get_color())
    axis.plot([0, 1], [0, 1], ":", color="grey")
    axis.set(ylabel="accuracy", title=f"Reliability (validation, {len(next(iter(predictions.values()))['labels'])} "
                                      f"images, {ECE_BINS} bins)")
    axis.legend(fontsize=8)
    counts_axis.set(xlabel="confidence", ylabel="images per bin", xlim=(0, 1))
    return _png(figure)


def cost_figure(rows: list[dict]) -> str:
    figure, axis = plt.subplots(figsize=(4.5, 4))
    for row in rows:
        low, high = row["intervals_95"]["accuracy"]
        axis.errorbar(row["fit_seconds"], row["accuracy"],
                      yerr=[[row["accuracy"] - low], [high - row["accuracy"]]], fmt="o", capsize=4,
                      label=row["head"])
    axis.set_xscale("log")
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labels on decades only
    axis.set(xlabel="fit seconds (log)", ylabel="validation accuracy", title="Accuracy against fit time")
    axis.legend(fontsize=8)
    return _png(figure)


def confidently_wrong(store: FeatureStore, saved: dict) -> list[dict]:
    """The validation images the head got wrong with the highest confidence."""
    proba, labels = saved["proba"], saved["labels"]
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-proba[wrong].max(axis=1), kind="stable")][:GALLERY_SIZE]
    root = Path(store.manifest["data_root"])
    gallery = []
    for i in wrong:
        path = store.manifest["sources"][int(saved["sources"][i])]["path"]
        entry = {"path": path, "true": store.class_names[labels[i]],
                 "predicted": store.class_names[predicted[i]], "confidence": float(proba[i].max())}
        try:
            buffer = io.BytesIO()
            Image.fromarray(load_pixels(root / path, THUMBNAIL)).save(buffer, format="PNG")
            entry["image"] = _data_uri(buffer.getvalue())
        except (OSError, ValueError):
            entry["image"] = None  # the photo has moved since extraction
        gallery.append(entry)
    return gallery


def settings_rows(store: FeatureStore) -> list[list[str]]:
    manifest, config = store.manifest, store.manifest["config"]
    weights = manifest["weights"]
    skipped = manifest["skipped"]
    return [
        ["backbone", BACKBONE],
        ["weights", weights["identity"] + (f" (warning: {weights['warning']})" if weights["warning"] else "")],
        ["image size", str(config["image_size"])], ["pooling", config["pooling"]],
        ["precision", f"{config['precision']} on {config['engine']}"], *int8_drift_rows(manifest),
        ["augmented passes", str(config["passes"])], ["feature dtype", manifest["dtype"]],
        ["data", f"{manifest['data_root']} ({manifest['layout']} layout)"],
        ["images", f"{len(manifest['sources'])} in {len(store.class_names)} classes"],
        ["skipped files", f"{len(skipped)}" + "".join(f"; {s['path']} ({s['reason']})" for s in skipped[:20])],
    ]


def int8_drift_rows(manifest: dict) -> list[list[str]]:
    """An int8 store's drift from fp32, per CPU class it was checked on."""
    if "int8" not in manifest:
        return []
    drift = manifest["int8"]["calibration"].get("drift", {})
    return [["int8 drift", "; ".join(map(describe_drift, drift.values())) or "not measured"]]


def write_report(store: FeatureStore, board: dict, runs: Path) -> Path:
    """Write ``report.html`` and ``report.md`` beside the leaderboard; return the HTML path."""
    folder = runs / store.key
    heads = [row["head"] for row in board["rows"]]
    predictions = {h: dict(np.load(folder / h / PREDICTIONS_FILE, allow_pickle=False)) for h in heads}
    head_metrics = {h: json.loads((folder / h / METRICS_FILE).read_text()) for h in heads}
    roc, pr = curve_figures(predictions)
    best = board["chosen"]["head"]
    gallery = confidently_wrong(store, predictions[best])

    header, body = table_cells(board["rows"])
    settings = settings_rows(store)
    figures = [confusion_figure(h, head_metrics[h]["confusion_matrix"], store.class_names) for h in heads]
    gallery_html = "".join(
        f"<figure>{_img(g['image'], g['path']) if g['image'] else '(photo moved)'}<figcaption>"
        f"<b>true {html.escape(g['true'])}, predicted {html.escape(g['predicted'])} ({g['confidence']:.2f})</b>"
        f"<br>{html.escape(g['path'])}</figcaption></figure>" for g in gallery)
    test = board["chosen"].get("test")
    test_html = (f"<p>Scored once on the test split ({test['n_samples']} images): accuracy "
                 f"{test['accuracy']:.4f}, log loss {test['log_loss']:.4f}.</p>" if test else "")
    title = html.escape(f"Heads on {Path(store.manifest['data_root']).name}, {date.today().isoformat()}")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{STYLE}</style></head><body>
<h1>{title}</h1>
<p>Data folder {html.escape(store.manifest['data_root'])}; feature store {store.key}.</p>
<h2>Leaderboard ({board['validation_images']} validation images)</h2>
{_table(header, body)}
<p>Intervals: 95% bootstrap percentiles over validation images. <i>vs best</i>: McNemar's test against
the top head; * differs at p &lt; 0.05, ~ cannot be told apart.</p>
<h2>Chosen head</h2><p>{html.escape(board['chosen']['why'])}</p>{test_html}
<h2>Pairwise McNemar tests</h2>
{_table(*pairwise_cells(board["pairwise"]))}
<h2>Curves</h2><div class="figs">{_img(roc, "ROC curves")}{_img(pr, "precision-recall curves")}
{_img(reliability_figure(predictions), "reliability diagram")}{_img(cost_figure(board['rows']), "accuracy against fit time")}</div>
<h2>Confusion matrices</h2><div class="figs">{"".join(_img(f, "confusion matrix") for f in figures)}</div>
<h2>Most confidently wrong validation images ({html.escape(best)})</h2>
<div class="gallery">{gallery_html or "<p>None: every validation image is right.</p>"}</div>
<h2>Store settings</h2>{_table(["setting", "value"], settings)}
</body></html>
"""
    atomic_write_bytes(folder / "report.html", page.encode("utf-8"), RUNS_FIX)
    markdown = to_markdown(board) + "\n## Store settings\n\n" + "\n".join(
        markdown_table(["setting", "value"], settings)) + "\n"
    atomic_write_bytes(folder / "report.md", markdown.encode("utf-8"), RUNS_FIX)
    return folder / "report.html"
