"""Exclusive kernel locks on folders being written (a store, a run), which die with their process."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from features.errors import FeatureError
from features.store import make_store_folder

class FolderLock:
    """``with FolderLock(path, what):`` holds an exclusive ``flock`` on the file ``path`` or refuses
    in one line naming the holder (its pid and host, which it writes into the file).

    The kernel releases the lock when the holder's process ends, however it ends (SIGKILL, a full
    disk), so a lock is never stale and never taken over by two processes at once. The file
    stays (emptied on release): unlinking a lock file lets two processes lock two files.
    """

    def __init__(self, path: Path, what: str):
        self.path, self.what = Path(path), what
        self.descriptor: int | None = None

    def __enter__(self) -> "FolderLock":
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise FeatureError(f"Cannot lock {self.what} ({self.path}): {error.strerror or error}.") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            os.close(descriptor)
            raise FeatureError(f"Process {holder.get('pid', '(not yet named)')} on {holder.get('host', 'this host')} "
                               f"is writing {self.what}; wait for it to finish (its lock goes when that process "
                               "ends).") from None
        self.descriptor = descriptor
        try:  # who holds it, for the message above; a full disk only loses the name
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        except OSError:
            pass
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            os.ftruncate(self.descriptor, 0)
        except OSError:
            pass
        os.close(self.descriptor)  # releases the lock


def _holder(descriptor: int) -> dict:
    """The pid and host a holder wrote into the lock file, or {} while it has not (yet)."""
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def lock_path(folder: Path) -> Path:
    """Where the lock on ``folder`` lives: ``.<name>.lock`` beside it, so the folder holds only its data."""
    return folder.with_name(f".{folder.name}.lock")


def store_lock(folder: Path) -> FolderLock:
    """The lock on a store folder (created if need be), held while it is written."""
    make_store_folder(Path(folder))
    return FolderLock(lock_path(Path(folder)), f"the store {folder}")
