"""Fault injection from the test side: in a process that imports this file, every ``os.fsync``
pauses first, so that a test can kill the process while a finished-but-unrenamed temporary
file exists (the store writes temporary file, fsync, rename).

Run the CLI through it (``python tests/slow_writes.py features ...``), or give it to Dask
workers as a preload script.
"""

import os
import runpy
import sys
import time

PAUSE_SECONDS = float(os.environ.get("SLOW_WRITES_PAUSE", "0.3"))
_fsync = getattr(os.fsync, "unpatched", os.fsync)  # loaded twice (Dask preloads do): patch once


def _slow_fsync(descriptor: int) -> None:
    time.sleep(PAUSE_SECONDS)
    _fsync(descriptor)


_slow_fsync.unpatched = _fsync
os.fsync = _slow_fsync

if __name__ == "__main__":  # the CLI, as `python -m pipeline` would run it
    sys.path.insert(0, os.getcwd())
    runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
