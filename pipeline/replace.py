"""Put a finished folder where another was in one step: readers see the old folder or the new one."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from pathlib import Path

AT_FDCWD = -100
RENAME_EXCHANGE = 2  # renameat2(2): swap two paths atomically (Linux 3.15+, most local file systems)


def replace_folder(new: Path, target: Path) -> None:
    """Move the complete folder ``new`` to ``target`` and delete what ``target`` held.

    Where the kernel can swap the two names at once it does; elsewhere ``target`` is renamed
    aside first, leaving it missing for the instant between two renames, never half-written.
    """
    if not target.exists():
        os.replace(new, target)
        return
    if not _exchange(new, target):
        previous = new.with_name(f"{new.name}-old")
        os.replace(target, previous)
        os.replace(new, target)
        new = previous
    shutil.rmtree(new, ignore_errors=True)  # the old folder, now under the temporary name


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths with renameat2; False where it is unavailable."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))
