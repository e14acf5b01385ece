"""A rich progress bar on a terminal; silence in logs and under DVC when output is piped."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator


class _Silent:
    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


@contextlib.contextmanager
def progress(enabled: bool | None = None) -> Iterator:
    """Yield a rich `Progress` when stderr is a terminal (or `enabled`), else a no-op stand-in."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _Silent()
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
