"""Outputs are a function of their inputs: every stage of the default, re-run by hand with nothing changed,
writes the same bytes (wall times and host names go to metrics/timing/, beside the results)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO, TINY, run_cli, write_params

SETTINGS = {**TINY, "train.epochs": 2, "train.eval_n": 16, "model.args.width": 4, "attack.n": 16, "sanity.n": 16,
            "attack.suite": ["fgsm", "pgd20", "l2_pgd"], "runs": ["xe", "otjr"]}
#: Every stage command of dvc.yaml, in its order, for the runs above.
STAGES = [["params"], ["download", "--dataset", "digits"], ["preprocess", "--dataset", "digits"],
          *[[kind, "--dataset", "digits", "--method", run] for kind in ("train", "attack", "sanity")
            for run in SETTINGS["runs"]],
          ["analyze", "--dataset", "digits"], ["report"], ["aggregate"]]


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file but the bookkeeping (.otjr) and the timings (metrics/timing)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.relative_to(root).as_posix().startswith((".otjr/", "metrics/timing/"))}


@pytest.mark.slow
def test_every_stage_rerun_writes_the_same_bytes(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    write_params(root, SETTINGS)
    shutil.copyfile(REPO / ".gitignore", root / ".gitignore")
    for args in STAGES:
        run_cli("stage", *args, cwd=root, check=True)
    first = _digests(root)
    timed = json.loads((root / "metrics" / "timing" / "train" / "digits" / "otjr.json").read_text())
    assert len(timed["epoch_seconds"]) == 2 and timed["host"] and timed["train_seconds"] > 0
    attack = json.loads((root / "metrics" / "attacks" / "digits" / "xe.json").read_text())
    assert "seconds" not in attack["pgd20"] and attack["pgd20"]["passes"]  # the deterministic count stays
    for args in STAGES:
        run_cli("stage", *args, cwd=root, check=True)
    second = _digests(root)
    assert {"models/digits/otjr.safetensors", "metrics/report/report.md", "metrics/summary.json"} <= set(first)
    assert [k for k in first.keys() | second.keys() if first.get(k) != second.get(k)] == []
