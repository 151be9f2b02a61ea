"""Start-up check: ``features``, ``heads`` and ``pipeline`` are this project's own packages.

PyPI has unrelated distributions with the top-level modules ``features`` and ``pipeline``;
installed after this one, they overwrite its ``__init__.py``, and a ``features.py`` or
``pipeline/`` in the working folder shadows it. Each of the project's packages carries the
``MARKER`` line, and all three lie side by side; anything else is named in one line.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGES = ("features", "heads", "pipeline")
MARKER = '__distribution__ = "bottleneck-heads"'


def foreign_package() -> str | None:
    """Why one of ``PACKAGES`` is not this project's (found elsewhere, or its ``__init__.py``
    replaced), or None when all three are; nothing is imported to find out."""
    home = Path(__file__).resolve().parents[1]
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec and spec.origin else None
        if origin != home / name / "__init__.py":
            return (f"the module {name!r} is imported from {origin or 'nowhere'}, not from {home / name}: "
                    f"another package or file named {name} shadows bottleneck-heads' own; rename or remove it.")
        if MARKER not in origin.read_text(errors="replace"):
            return (f"{origin} is not bottleneck-heads' own: another distribution with a top-level {name!r} "
                    f"package overwrote it; pip uninstall that one, then pip install --force-reinstall "
                    f"bottleneck-heads.")
    return None
