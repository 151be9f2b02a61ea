"""Text that is safe to print: file names are bytes on disk, not always UTF-8."""

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
