"""End to end under DVC: `dvc repro`, then `dvc exp run -S lambda_j=...` re-runs only OTJR's branch."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY, write_params

GIT_ENV = {"GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.invalid",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.invalid"}


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OTJR_ROOT", "PYTHONPATH")}
    # stage commands say `python`: make it this interpreter, whatever the caller's PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **GIT_ENV, "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1"}


def _run(*args: str, cwd: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def _dvc(*args: str, cwd: Path) -> str:
    return _run(sys.executable, "-m", "dvc", *args, cwd=cwd)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of this checkout's tracked files in a fresh git repo, with tiny params and every registered run
    (rendered into its dvc.yaml), reproduced once."""
    root = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        src = REPO / name
        if src.is_file() and not name.startswith(("data/", "models/", "metrics/")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    from pipeline.dvc_render import registered_runs

    # every run, the add-on ones too; 16 images per attack and sanity sweep: this checks the stages, not accuracies
    write_params(root, {**TINY, "train.epochs": 1, "attack.n": 16, "sanity.n": 16, "runs": registered_runs()})
    _run(sys.executable, "-m", "pipeline", "dvc", "render", cwd=root)
    _run("git", "init", "-q", cwd=root)
    _run("git", "add", "-A", cwd=root)
    _run("git", "commit", "-qm", "copy", cwd=root)
    out = _dvc("repro", cwd=root)
    (root / "repro.log").write_text(out)
    _run("git", "add", "-A", cwd=root)
    _run("git", "commit", "-qm", "reproduced", cwd=root)
    return root


def _train_stages(root: Path) -> list[str]:
    from ruamel.yaml import YAML

    stages = YAML(typ="safe", pure=True).load((root / "dvc.yaml").read_text())["stages"]
    return [name for name in stages if name.startswith("train-") and not name.endswith("-seeds")]  # `seed`'s


@pytest.mark.slow
def test_repro_runs_every_stage_and_prints_the_table(repo):
    log = (repo / "repro.log").read_text()
    for stage in ["download@digits", "preprocess@digits", "aggregate"] + [f"{s}@digits" for s in _train_stages(repo)]:
        assert f"Running stage '{stage}'" in log, stage
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    for method in ("xe", "pgd_at", "otjr"):
        row = summary[method]["digits"]
        assert {"clean", "fgsm", "pgd20", "worst_case"} <= set(row)
        assert 0 <= row["pgd20"] <= row["clean"] <= 100
    table = (repo / "metrics" / "summary.md").read_text()
    assert "| otjr |" in table and table.splitlines()[0] in log  # printed at the end of dvc repro


@pytest.mark.slow
def test_second_repro_changes_nothing(repo):
    out = _dvc("repro", cwd=repo)
    assert "Running stage 'train-" not in out and "Running stage 'attack" not in out


#: The runs whose training reads OTJR's top-level lambda_j: OTJR itself and OTJR with its add-ons.
OTJR_RUNS = {"otjr", "otjr-awp", "otjr-lbgat"}


@pytest.mark.slow
def test_experiment_on_lambda_j_reruns_only_otjr(repo):
    out = _dvc("exp", "run", "-S", "lambda_j=0.5", cwd=repo)
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    skipped = set(re.findall(r"Stage '([^']+)' didn't change", out))
    for stage in _train_stages(repo):
        run = stage.removeprefix("train-")
        assert f"{stage}@digits" in (ran if run in OTJR_RUNS else skipped), stage
    evaluated = {s for s in ran if s.startswith(("attack@", "sanity@"))}
    assert evaluated == {f"{kind}@digits-{run}" for kind in ("attack", "sanity") for run in OTJR_RUNS}

    # OTJR's training logs changed; no other method's did, and the headline moved only in OTJR rows
    changed = _run("git", "diff", "--name-only", cwd=repo).split()
    assert "metrics/train/digits/otjr/metrics.json" in changed
    changed_logs = {p.split("/")[3] for p in changed if p.startswith("metrics/train/")}
    assert "otjr" in changed_logs and changed_logs <= OTJR_RUNS
    diff = json.loads(_dvc("metrics", "diff", "--json", cwd=repo))
    assert set(diff) <= {"metrics/headline.json"}  # the one metrics file: the curves are plots
    assert all(key.split(".")[0] in OTJR_RUNS for key in diff.get("metrics/headline.json", {}))

    shown = json.loads(_dvc("exp", "show", "--json", cwd=repo))
    assert "0.5" in json.dumps(shown)
