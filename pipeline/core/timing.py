"""Wall times and the host of a stage's run, kept beside its results and out of them.

A checkpoint or a record is a function of the stage's inputs, byte for byte, so re-running a stage leaves
`dvc status` clean; how long it took, and where, is not. Those go to metrics/timing/<stage>/<dataset>/<run>.json
(`paths.timing`): git-ignored and no DVC output, read by the report's training-time table.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from . import paths
from .io import read_json, write_json


def write(stage: str, dataset: str, run: str, **figures: Any) -> Path:
    out = paths.timing(stage, dataset, run)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {"host": socket.gethostname(), **figures})
    return out


def read(stage: str, dataset: str, run: str) -> dict[str, Any]:
    """The stage's timing of (dataset, run), or {} where it never ran here."""
    path = paths.timing(stage, dataset, run)
    return read_json(path, what="timing file") if path.is_file() else {}
