"""Progress for long loops: a rich bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

LOG_EVERY_SECONDS = 10.0


@contextmanager
def progress(total: int, description: str, unit: str = "images") -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows done / total, rate and ETA while the block runs."""
    if sys.stderr.isatty():
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(description, total=total, rate="")
            started = time.monotonic()

            def advance(n: int) -> None:
                bar.advance(task, n)
                done = bar.tasks[0].completed
                bar.update(task, rate=f"{done / max(time.monotonic() - started, 1e-9):6.1f} {unit}/s")

            yield advance
        return
    yield _LogLines(total, description, unit)


class _LogLines:
    """``advance(n)`` that prints a line every ``LOG_EVERY_SECONDS`` and at the end."""

    def __init__(self, total: int, description: str, unit: str):
        self.total, self.description, self.unit = total, description, unit
        self.done = 0
        self.started = self.last = time.monotonic()

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_SECONDS or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate else 0.0
            print(f"{self.description}: {self.done}/{self.total} {self.unit}, "
                  f"{rate:.1f} {self.unit}/s, ETA {eta:.0f}s", file=sys.stderr, flush=True)
