"""A tiny project `dvc repro`-ed once per test session, for the tests that run DVC on it (each on a copy)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY, write_params

SETTINGS = {**TINY, "train.epochs": 1, "train.eval_n": 16, "model.args.width": 4, "attack.n": 16,
            "attack.suite": ["fgsm", "pgd20", "l2_pgd"], "runs": ["xe"]}


def dvc_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OTJR_ROOT", "PYTHONPATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the stages' `python`
    return {**env, "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1"}


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=dvc_env(), capture_output=True,
                          text=True)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> Path:
    """A copy of this checkout's code and dvc.yaml, rendered for xe alone, `dvc repro`-ed and committed."""
    root = tmp_path_factory.mktemp("reproduced")
    for name in git(REPO, "ls-files").split():
        if (REPO / name).is_file() and not name.startswith(("data/", "models/", "metrics/", "tests/", "docs/")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    write_params(root, SETTINGS)
    git(root, "init", "-q")
    for args in (["pipeline", "dvc", "render"], ["dvc", "repro"]):  # the copy's code: python -m looks in cwd first
        proc = subprocess.run([sys.executable, "-m", *args], cwd=root, env=dvc_env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        git(root, "add", "-A")
        git(root, "commit", "-qm", args[-1])
    return root
