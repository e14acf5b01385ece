"""Shared fixtures: a throw-away project root with tiny params, and the embedded data in it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]

#: Overrides that make every stage take seconds on a CPU (dotted keys into params.yaml).
TINY = {
    "train.epochs": 2,
    "train.eval_n": 32,
    "attack.n": 64,
    "sanity.n": 32,
    "model.args.width": 8,
}


def set_dotted(d: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[last] = value


def write_params(root: Path, overrides: dict | None = None, base: dict | None = None) -> dict:
    """Write root/params.yaml: the repo's params (or `base`) with dotted-key overrides applied."""
    yaml = YAML(typ="safe", pure=True)
    params = copy.deepcopy(base) if base is not None else yaml.load((REPO / "params.yaml").read_text())
    for k, v in (overrides or {}).items():
        set_dotted(params, k, v)
    with open(root / "params.yaml", "w") as f:
        yaml.dump(params, f)
    return params


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An empty project root (OTJR_ROOT) with tiny params.yaml; returns its path."""
    monkeypatch.setenv("OTJR_ROOT", str(tmp_path))
    write_params(tmp_path, TINY)
    return tmp_path


@pytest.fixture
def digits(project) -> Path:
    """`project` with the embedded digits downloaded and preprocessed."""
    from pipeline import api

    api.download("digits")
    api.preprocess("digits")
    return project


def wait_for_file(path: Path, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """Wait until `path` exists, then check that `proc` is still running (to be killed mid-run)."""
    import time

    deadline = time.time() + timeout_s
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"the process ended before {path.name} appeared; train for more epochs"


def run_cli(*args: str, cwd: Path, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """`python -m pipeline ...` in a subprocess, with this checkout's code first on the path."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OTJR_ROOT": str(cwd), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
