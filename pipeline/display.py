"""Text for the terminal: safe to print (file names are bytes on disk, not always UTF-8), and
a fitted head's choices in words."""

from __future__ import annotations

import os


def printable(text: str) -> str:
    """``text`` with undecodable bytes (surrogate escapes) shown as ``\\xNN``.

    Names read from disk carry bytes that are not UTF-8 as lone surrogates; printing them
    raises ``UnicodeEncodeError``. Valid text is returned unchanged.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def describe_fit(details: dict) -> str:
    """What a head chose while fitting (its run's ``details``), as one line for people."""
    parts = []
    if details.get("best_params"):
        searched = ", ".join(f"{name}={value}" for name, value in details["best_params"].items())
        score = details.get("cv_score")
        by = " by log loss" if details.get("search_metric") == "log_loss" else ""
        parts.append(f"searched {searched}{by}" + (f" (grouped CV balanced accuracy {score:.4f})" if score is not None else ""))
    if details.get("solver"):
        parts.append(details["solver"])
    if details.get("calibration"):
        parts.append(f"probabilities calibrated by {details['calibration']}")
    if "chosen" in details:
        parts.append(f"votes with {' + '.join(details['chosen'])} (the members' best subset in grouped CV)")
    if "top_epochs" in details:
        parts.append(f"top {epochs(details['top_epochs'])}, then block 5 fine-tuned {epochs(details['epochs'])}"
                     f"{' (the top alone did best on the holdout)' if details['epochs'] == 0 else ''}"
                     f" in {details['precision']}")
    elif "epochs" in details:  # the dense head: one count a network (a bare count in older heads)
        counts = details["epochs"] if isinstance(details["epochs"], list) else [details["epochs"]]
        trained = epochs(counts[0]) if len(counts) == 1 else (
            f"{len(counts)} networks averaged, trained {', '.join(map(str, counts[:-1]))} and {epochs(counts[-1])}")
        parts.append(f"{trained} (early stopping on a grouped holdout)")
    if "rows_seen" in details:
        refitted = "then refitted on all" if details.get("refitted") else "trained on"
        parts.append(f"{refitted} {details['rows_seen']} training rows")
    parts += [note for note in (details.get("search_note"), details.get("selection_note")) if note]
    return "; ".join(parts)


def epochs(count: int) -> str:
    return f"{count} epoch{'' if count == 1 else 's'}"
