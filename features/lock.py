"""An exclusive lock on a store folder, so two extractions never write the same shards."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from features.errors import FeatureError
from features.store import make_store_folder

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class StoreLock:
    """``with StoreLock(folder):`` holds ``folder/.lock`` (owner pid and host) or refuses.

    A lock left by a dead process on this host is taken over; one held by a live
    process, or by another host (whose processes cannot be checked), is refused.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_FILE
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}

    def __enter__(self) -> "StoreLock":
        make_store_folder(self.path.parent)
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(descriptor, "w") as handle:
                json.dump(self.owner, handle)
            return self
        raise FeatureError(f"Could not lock {self.path}; another process keeps taking it.")

    def _take_over_if_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):  # half-written by a process killed while locking
            holder = {"pid": -1, "host": self.owner["host"]}
        if holder.get("host") == self.owner["host"] and not _alive(int(holder.get("pid", -1))):
            self.path.unlink(missing_ok=True)
            return
        raise FeatureError(
            f"The store {self.path.parent} is being written by process {holder.get('pid')} on "
            f"{holder.get('host')}. Wait for it to finish, or delete {self.path} if that process "
            "is gone."
        )

    def __exit__(self, *exc_info) -> None:
        self.path.unlink(missing_ok=True)
