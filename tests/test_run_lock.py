"""One process per run, and a training's tracked results replaced all at once or not at all."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli, write_params
from pipeline.core import lock, paths
from pipeline.core.errors import UserError


# the lock itself -----------------------------------------------------------------------------
def _holder(pid: int, **extra) -> str:
    return json.dumps({"pid": pid, "host": socket.gethostname(), "ticks": lock._boot_ticks(pid),
                       "started": "2026-01-01T00:00:00+00:00", **extra})


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_second_holder_is_refused_naming_the_first(project):
    other = _sleeper()
    try:
        path = paths.lock_file("train", "digits", "xe")
        path.parent.mkdir(parents=True)
        path.write_text(_holder(other.pid))
        with pytest.raises(UserError) as err:
            lock.acquire(path, "train of xe@digits")
        msg = str(err.value)
        assert f"pid {other.pid}" in msg and socket.gethostname() in msg and "2026-01-01" in msg
        assert "\n" not in msg
        assert json.loads(path.read_text())["pid"] == other.pid  # left as it was
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("leftover", ["dead pid", "zombie pid", "reused pid", "torn file"])
def test_stale_lock_is_taken_over(project, leftover):
    path = paths.lock_file("attack", "digits", "xe")
    path.parent.mkdir(parents=True)
    zombie = None
    if leftover == "dead pid":
        path.write_text(_holder(_dead_pid()))
    elif leftover == "zombie pid":  # killed, not yet reaped (a SIGKILLed torchrun's ranks): it answers signal 0
        zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        path.write_text(_holder(zombie.pid))
        os.kill(zombie.pid, signal.SIGKILL)
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
    elif leftover == "reused pid":  # a live pid that started after the lock was written
        path.write_text(_holder(os.getppid(), ticks=-1))
    else:
        path.write_text('{"pid": 12')
    with lock.run_lock("attack", "digits", "xe") as held:
        assert json.loads(held.read_text())["pid"] == os.getpid()
    assert not path.exists()
    if zombie is not None:
        zombie.wait()


def test_lock_of_another_host_is_respected(project):
    path = paths.lock_file("sanity", "digits", "xe")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(UserError, match="elsewhere.example"):
        lock.acquire(path, "sanity of xe@digits")


def test_a_process_stuck_while_taking_the_lock_delays_others_only_briefly(project, monkeypatch):
    import fcntl

    monkeypatch.setattr(lock, "GUARD_WAIT_S", 0.2)
    path = paths.lock_file("train", "digits", "xe")
    path.parent.mkdir(parents=True)
    with open(path.with_name(path.name + ".guard"), "a") as guard:  # as a process stopped mid-check holds it
        fcntl.flock(guard, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="taking the lock"):
            lock.acquire(path, "train of xe@digits")
    assert not path.exists()


def test_racing_takeovers_of_one_stale_lock_leave_one_holder(project):
    """Eight processes find the same stale lock at once: exactly one takes it."""
    path = paths.lock_file("train", "digits", "xe")
    path.parent.mkdir(parents=True)
    path.write_text(_holder(_dead_pid()))
    code = ("import sys, time; from pathlib import Path; from pipeline.core import lock\n"
            "try:\n    lock.acquire(Path(sys.argv[1]), 'x')\nexcept Exception:\n    sys.exit(3)\ntime.sleep(3)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], env=env) for _ in range(8)]
    codes = sorted(p.wait() for p in procs)
    assert codes == [0] + [3] * 7


# the training stage ------------------------------------------------------------------------
EPOCHS = 4
SETTINGS = {"train.epochs": EPOCHS, "train.eval_n": 16, "model.args.width": 4}


def _env(root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(root), "OMP_NUM_THREADS": "1"}


def _start_training(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "stage", "train", "--dataset", "digits", "--method",
                             "xe"], cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _prepared(root: Path, **overrides) -> Path:
    root.mkdir()
    write_params(root, {**SETTINGS, **overrides})
    for stage in ("download", "preprocess"):
        run_cli("stage", stage, "--dataset", "digits", cwd=root, check=True)
    return root


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)


def _results(root: Path) -> dict[str, str]:
    """sha256 of every tracked training result: each log file, and the checkpoint's weights and settings."""
    from pipeline.core.io import load_tensors

    out = {}
    logs = paths.train_log_dir("digits", "xe").relative_to(paths.root())
    for p in sorted((root / logs).rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    ckpt = root / "models" / "digits" / "xe.safetensors"
    if ckpt.exists():
        tensors, meta = load_tensors(ckpt)
        h = hashlib.sha256(json.dumps(meta["settings"], sort_keys=True).encode())
        for k in sorted(tensors):
            h.update(k.encode() + tensors[k].numpy().tobytes())
        out["checkpoint"] = h.hexdigest()
    return out


@pytest.mark.slow
def test_second_training_of_a_run_fails_at_once_and_the_first_is_unharmed(tmp_path, monkeypatch):
    root = _prepared(tmp_path / "p")
    monkeypatch.setenv("OTJR_ROOT", str(root))
    first = _start_training(root)
    _wait_for(paths.train_staging("digits", "xe") / "logs", first)  # made once the lock is taken
    os.kill(first.pid, signal.SIGSTOP)  # hold it mid-run while the second one starts
    try:
        second = run_cli("stage", "train", "--dataset", "digits", "--method", "xe", cwd=root)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 2
    assert len(second.stderr.splitlines()) == 1
    assert f"pid {first.pid}" in second.stderr and "already running" in second.stderr
    assert first.wait() == 0, first.stderr.read()
    tsv = (paths.train_log_dir("digits", "xe") / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in tsv] == ["step"] + [str(i) for i in range(EPOCHS)]


@pytest.mark.slow
def test_sigkill_at_random_points_leaves_old_or_new_results_never_a_mix(tmp_path, monkeypatch):
    """Retrain with new params, SIGKILL at random moments: results are the old or the complete new ones."""
    new_params = {"seed": 1}
    reference = _prepared(tmp_path / "reference", **new_params)
    proc = _start_training(reference)
    assert proc.wait() == 0, proc.stderr.read()
    new = _results(reference)

    root = _prepared(tmp_path / "project")
    proc = _start_training(root)
    assert proc.wait() == 0, proc.stderr.read()
    old = _results(root)
    assert old != new and old.keys() == new.keys()

    write_params(root, {**SETTINGS, **new_params})
    monkeypatch.setenv("OTJR_ROOT", str(root))
    rng = random.Random(15)
    seen = []
    for _ in range(5):
        proc = _start_training(root)
        _wait_for(paths.lock_file("train", "digits", "xe"), proc)  # training has begun
        time.sleep(rng.uniform(0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = _results(root)
        assert now in (old, new), f"a mix after a kill (runs so far: {seen})"
        seen.append("new" if now == new else "old")
    proc = _start_training(root)  # resumes where the last kill left it
    assert proc.wait() == 0, proc.stderr.read()
    assert _results(root) == new  # logs byte-identical to the unbroken run, weights equal
    assert not paths.resume_state("digits", "xe").exists()
