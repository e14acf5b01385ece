"""`otjr exp show`: experiments side by side, only the params that differ, the headline numbers, <= 120 columns."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import run_cli
from dvc_project import dvc, git, reproduced  # noqa: F401 (a fixture)
from pipeline.report.experiments import parse, table


def _entry(name: str, params: dict, headline: dict) -> dict:
    """One experiment as `dvc exp show --json` gives it (DVC 3)."""
    return {"rev": name, "name": name, "data": {"params": {"params.yaml": {"data": params}},
                                                "metrics": {"metrics/headline.json": {"data": headline}}}}


def _headline(clean: float, sanity: str) -> dict:
    return {"otjr": {"digits": {"clean": clean, "clean_low": clean - 5, "clean_high": clean + 2, "sanity": sanity}}}


def test_only_differing_params_and_every_headline_measure_each_experiment_a_column():
    base = {"seed": 0, "lambda_j": 0.1, "train": {"epochs": 8, "lr": 0.05}}
    shown = [{**_entry("main", base, _headline(90.0, "pass")), "experiments": [
        {"revs": [_entry("exp-a", {**base, "lambda_j": 0.5}, _headline(85.25, "warn"))]},
        {"revs": [_entry("exp-b", {**base, "train": {"epochs": 2, "lr": 0.05}}, {})]}]}]
    lines = table(parse(shown)).splitlines()
    assert lines[0].split() == ["experiment", "main", "exp-a", "exp-b"]
    labels = [line.split()[0] for line in lines[2:] if line.strip()]
    assert "lambda_j" in labels and "train.epochs" in labels and "seed" not in labels and "train.lr" not in labels
    clean = next(line for line in lines if line.startswith("otjr@digits clean"))
    assert "90.0 [85.0, 92.0]" in clean and "85.2 [80.2, 87.2]" in clean and clean.rstrip().endswith("-")
    assert next(line for line in lines if "sanity" in line).split()[2:] == ["pass", "warn", "-"]


def test_only_finished_experiments_are_shown_not_queued_running_or_failed_ones():
    base = {"lambda_j": 0.1}
    shown = [{**_entry("main", base, _headline(90.0, "pass")), "experiments": [
        {"executor": {"state": "success"}, "revs": [_entry("done", {"lambda_j": 0.5}, _headline(85.0, "pass"))]},
        {"executor": None, "revs": [_entry("plain", {"lambda_j": 0.3}, _headline(86.0, "pass"))]},
        # DVC lists these with their own params but main's metrics, which are not their results
        {"executor": {"state": "queued"}, "revs": [_entry("waiting", {"lambda_j": 0.7}, _headline(90.0, "pass"))]},
        {"executor": {"state": "running"}, "revs": [_entry("busy", {"lambda_j": 0.9}, _headline(90.0, "pass"))]},
        {"executor": {"state": "failed"}, "revs": [_entry("broken", {"lambda_j": 0.2}, {})]}]}]
    assert [e.name for e in parse(shown)] == ["main", "done", "plain"]


def test_more_experiments_than_fit_go_to_blocks_no_wider_than_asked():
    shown = [_entry(f"exp-{i}", {"lambda_j": i / 10}, _headline(80.0 + i, "pass")) for i in range(12)]
    text = table(parse(shown), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    blocks = [b for b in text.split("\n\n") if b.startswith("experiment")]
    assert len(blocks) > 1 and sum(len(b.splitlines()[0].split()) - 1 for b in blocks) == 12


@pytest.mark.slow
def test_two_real_experiments_side_by_side_in_120_columns(reproduced, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(reproduced, root, symlinks=True)
    proc = dvc(root, "exp", "run", "-n", "short-lr", "-S", "train.lr=0.02")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    shown = run_cli("exp", "show", cwd=root, check=True).stdout
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert lines[0].split()[1:] == [git(root, "branch", "--show-current").strip(), "short-lr"]
    assert [line.split() for line in lines if line.startswith("train.lr")] == [["train.lr", "0.05", "0.02"]]
    assert not any(line.startswith(("seed ", "train.epochs")) for line in lines)  # unchanged: left out
    for label in ("clean", "PGD-20", "worst case"):
        row = next(line for line in lines if line.startswith(f"xe@digits {label}"))
        assert row.count("[") == 2  # a value and its interval per experiment
    assert next(line for line in lines if line.startswith("xe@digits sanity")).split()[2] in ("pass", "warn", "fail")
    # `otjr stage sensitivity` reads its accuracies from the metrics file DVC really reports for each revision
    from pipeline.report.sensitivity import HEADLINE

    entries = json.loads(dvc(root, "exp", "show", "--json").stdout)
    revs = [e for e in entries] + [r for e in entries for x in e.get("experiments") or [] for r in x["revs"]]
    assert len(revs) >= 3 and all(HEADLINE in r["data"]["metrics"] for r in revs), revs
    assert all(r["data"]["metrics"][HEADLINE]["data"]["xe"]["digits"]["clean_n"] == 16 for r in revs)
