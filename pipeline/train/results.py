"""A training run's tracked results change all at once, at the end, or not at all.

The logs (dvclive's metrics.json and plots) are written to a staging folder
(`paths.train_staging`), never to metrics/train/<dataset>/<run>/ directly. When training
succeeds the checkpoint is written there too, with a digest of the logs, and the folder is
renamed to `paths.train_commit`: that rename is the commit point. Placing the committed
checkpoint and logs follows (a rename each, the logs swapped in one atomic exchange on
Linux); a process killed in between leaves the commit folder, and the next training of
that run completes the placing before it starts. Uncommitted staging is discarded: the
resume state holds the history the logs are rebuilt from.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from ..core import paths
from ..core.io import move_file, read_json, swap_in, tree_digest, write_json

CHECKPOINT = "checkpoint.safetensors"
LOGS = "logs"
RECORD = "commit.json"


def begin(dataset: str, run: str) -> Path:
    """Finish placing a committed earlier run, discard unfinished staging; returns an empty logs folder."""
    place(dataset, run)
    staging = paths.train_staging(dataset, run)
    shutil.rmtree(staging, ignore_errors=True)
    (staging / LOGS).mkdir(parents=True)
    return staging / LOGS


def commit(dataset: str, run: str, write_checkpoint: Callable[[Path], None]) -> None:
    """Write the checkpoint beside the finished logs, commit both, and put them in place."""
    staging = paths.train_staging(dataset, run)
    write_checkpoint(staging / CHECKPOINT)
    write_json(staging / RECORD, {"logs": tree_digest(staging / LOGS)})
    target = paths.train_commit(dataset, run)
    shutil.rmtree(target, ignore_errors=True)  # `begin` placed any earlier one
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, target)
    place(dataset, run)


def place(dataset: str, run: str) -> None:
    """Move a committed run's checkpoint and logs into place (idempotent: safe to repeat after a kill)."""
    done = paths.train_commit(dataset, run)
    if not done.is_dir():
        return
    if (done / CHECKPOINT).is_file():
        move_file(done / CHECKPOINT, paths.checkpoint(dataset, run))
    logs, final = done / LOGS, paths.train_log_dir(dataset, run)
    if logs.is_dir() and tree_digest(final) != read_json(done / RECORD, what="training commit record")["logs"]:
        swap_in(logs, final)
    paths.resume_state(dataset, run).unlink(missing_ok=True)
    shutil.rmtree(done)
