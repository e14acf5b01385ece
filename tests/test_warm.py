"""Stage commands under DVC run in a fork of a warm process (stages/_warm.py): same results, same exit
codes and error lines as a fresh process; a command killed takes its child with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli


def _warm(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(cwd), "DVC_STAGE": "test", **env}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=full, capture_output=True,
                          text=True)


def _server_up(since: float, timeout_s: float = 120) -> Path:
    """The socket of a warm server started after `since`."""
    folder = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"otjr-warm-{os.getuid()}"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        socks = [p for p in folder.glob("*.sock") if p.stat().st_mtime >= since - 1] if folder.is_dir() else []
        if socks:
            return socks[0]
        time.sleep(0.2)
    raise AssertionError(f"no warm server came up in {folder}")


def _untimed(record):
    """A record without its wall-clock times (which differ between any two runs)."""
    if isinstance(record, dict):
        return {k: _untimed(v) for k, v in record.items() if k != "seconds"}
    return [_untimed(v) for v in record] if isinstance(record, list) else record


@pytest.fixture
def trained(digits) -> Path:
    run_cli("stage", "train", "--dataset", "digits", "--method", "xe", cwd=digits, check=True)
    return digits


def test_warm_stage_gives_the_fresh_process_result(trained, monkeypatch):
    root = trained
    monkeypatch.setenv("OTJR_WARM", "1")
    fresh = run_cli("stage", "attack", "--dataset", "digits", "--method", "xe", cwd=root, check=True)
    record = _untimed(json.loads((root / "metrics/attacks/digits/xe.json").read_text()))
    flags = (root / "metrics/attacks/digits/xe.flags.safetensors").read_bytes()
    since = time.time()
    first = _warm("stage", "attack", "--dataset", "digits", "--method", "xe", cwd=root)  # starts the server
    assert first.returncode == 0, first.stderr
    _server_up(since)
    warm = _warm("stage", "attack", "--dataset", "digits", "--method", "xe", cwd=root)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout == fresh.stdout
    assert _untimed(json.loads((root / "metrics/attacks/digits/xe.json").read_text())) == record
    assert (root / "metrics/attacks/digits/xe.flags.safetensors").read_bytes() == flags

    bad = _warm("stage", "attack", "--dataset", "digits", "--method", "nonesuch", cwd=root)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "unknown method 'nonesuch'" in bad.stderr

    off = _warm("stage", "attack", "--dataset", "digits", "--method", "nonesuch", cwd=root, OTJR_WARM="0")
    assert off.returncode == 2 and off.stderr == bad.stderr


def test_killing_the_command_kills_its_warm_child(trained):
    root = trained
    since = time.time()
    _warm("stage", "sanity", "--dataset", "digits", "--method", "nonesuch", cwd=root)  # starts the server
    _server_up(since)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(root), "DVC_STAGE": "test"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "stage", "train", "--dataset", "digits", "--method",
                             "pgd_at"], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = root / ".otjr" / "locks" / "train.digits.pgd_at.lock"
    holder, deadline = None, time.time() + 120
    while holder is None and time.time() < deadline:
        try:
            holder = json.loads(lock.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    assert holder is not None, "the warm child never took its lock"
    assert holder != proc.pid  # the work runs in the child, not in the command's process
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(holder, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("the warm child outlived its command")
