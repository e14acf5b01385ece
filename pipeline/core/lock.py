"""One process per (stage, dataset, run): a lock file created with O_EXCL, naming its holder.

The lock is a small JSON file (pid, host, start time) under `paths.locks_dir()`. A second
process for the same run fails at once with one line naming the holder. A lock left by a
process that died (same host, pid gone, or pid reused by a process started later) is
stale and is taken over; the check-and-take-over runs under an flock on a guard file, so
two processes finding the same stale lock cannot both take it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from . import paths
from .errors import UserError

GUARD_WAIT_S = 10.0


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (Linux), or None where it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _boot_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def _zombie(pid: int) -> bool:
    """A killed process not yet reaped by its parent: it answers signal 0 but runs no more."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] in ("Z", "X")


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the holder recorded in a lock may still be running (unknown hosts count as alive)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _zombie(pid):
        return False
    ticks = holder.get("ticks")
    return ticks is None or _boot_ticks(pid) in (None, ticks)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # torn or foreign: written by a process killed while creating it
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"


def _create(path: Path) -> bool:
    """Create the lock with this process as holder; False if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "ticks": _boot_ticks(os.getpid()),
              "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    with os.fdopen(fd, "w") as f:
        json.dump(holder, f)
    return True


def _hold_guard(guard, path: Path, what: str) -> None:
    """flock the guard; another process holds it only for the few calls of a check, so wait briefly."""
    deadline = time.monotonic() + GUARD_WAIT_S
    while True:
        try:
            fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise UserError(f"{path}: another process has been taking the lock of {what} for over "
                                f"{GUARD_WAIT_S:.0f} s (stopped?); try again") from None
            time.sleep(0.01)


def acquire(path: Path, what: str) -> None:
    """Take the lock at `path` or raise `UserError` naming the live holder; `what` names the work."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        guard = open(path.with_name(path.name + ".guard"), "a")
    except OSError as err:
        raise UserError(f"{path.parent}: cannot write the lock of {what} ({err.strerror or err})") from None
    with guard:
        _hold_guard(guard, path, what)
        try:
            if _create(path):
                return
            holder = _read(path)
            if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                raise UserError(f"{path}: {what} is already running in this process")
            if holder and _alive(holder):
                raise UserError(f"{path}: {what} is already running ({_describe(holder)}); wait for it to finish, "
                                "or remove this file if that process is gone")
            path.unlink(missing_ok=True)  # stale: its holder died
            if not _create(path):
                raise UserError(f"{path}: could not take over the stale lock of {what}")
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


def release(path: Path) -> None:
    """Remove the lock if this process holds it."""
    holder = _read(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def run_lock(stage: str, dataset: str, run: str) -> Iterator[Path]:
    """Hold the lock of `stage` on (dataset, run) for the duration of the block."""
    path = paths.lock_file(stage, dataset, run)
    acquire(path, f"{stage} of {run}@{dataset}")
    try:
        yield path
    finally:
        release(path)
