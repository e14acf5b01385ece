"""A rich progress bar on a terminal; in logs (output piped, as under DVC in CI) plain lines, never silent long."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator


class _Silent:
    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


class Lines:
    """The bar as lines on stdout, for logs: one when a task starts, one per `update` with `info` (a training's
    epoch, an attack), and one per `advance` at least `every` seconds after the last line (a long epoch's batches)."""

    def __init__(self, every: float = 5.0, out=None):
        self.every, self.out = every, out or sys.stdout
        self.tasks: list[dict] = []
        self.last = time.monotonic()

    def _line(self, task: int) -> None:
        t = self.tasks[task]
        info = f" {t['info']}" if t["info"] else ""
        print(f"{t['description']}: {t['completed']}/{t['total']}{info}", file=self.out, flush=True)
        self.last = time.monotonic()

    def add_task(self, description: str, total: int | None = None, completed: int = 0, info: str = "", **_) -> int:
        self.tasks.append({"description": description, "total": total, "completed": completed, "info": info})
        print(f"{description}: started", file=self.out, flush=True)
        return len(self.tasks) - 1

    def update(self, task: int, *, info: str | None = None, completed: int | None = None, advance: int = 0,
               **_) -> None:
        if completed is not None:
            self.tasks[task]["completed"] = completed
        self.tasks[task]["completed"] += advance
        if info is not None:
            self.tasks[task]["info"] = info
            self._line(task)

    def advance(self, task: int, advance: int = 1) -> None:
        t = self.tasks[task]
        t["completed"] += advance
        if time.monotonic() - self.last >= self.every or t["completed"] == t["total"]:
            self._line(task)


@contextlib.contextmanager
def progress(enabled: bool | None = None) -> Iterator:
    """Yield a rich `Progress` when stderr is a terminal (or `enabled`), lines when not (`Lines`), nothing when
    `enabled` is False."""
    if enabled is False:
        yield _Silent()
        return
    if enabled is None and not sys.stderr.isatty():
        yield Lines()
        return
    # rich is only loaded when a bar is drawn (an interactive terminal): stages under DVC start faster
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        yield bar
