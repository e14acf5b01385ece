"""`bench/gpu_check.sh` in its tiny mode (what a CPU runs), so the GPU command cannot rot between GPU runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from pipeline.benchmark import gpu_check


@pytest.mark.slow
def test_the_gpu_check_command_runs_every_section_and_writes_its_summary(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable}  # CI's PATH has no venv python
    proc = subprocess.run([str(REPO / "bench" / "gpu_check.sh"), str(tmp_path), "--tiny"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["mode"] == "tiny" and result["ok"]
    s = result["sections"]
    assert set(s) == {"tests", "bench", "training", "attacks"} and all(v["ok"] for v in s.values())
    assert s["tests"]["tests"] > 0
    assert {(r["method"], r["path"], r["jacobian"]) for r in s["bench"]["rows"]} == {
        ("pgd_at", "fast", "-"), ("pgd_at", "reference", "-"), ("otjr", "fast", "exact"),
        ("otjr", "fast", "finite_difference"), ("otjr", "reference", "exact")}
    for method in ("pgd_at", "otjr"):
        assert s["training"][method]["seconds_per_cifar_epoch"] > 0
    for precision in ("fp32", "bf16"):
        attacks = s["attacks"][precision]["attacks"]
        assert set(attacks) == set(s["attacks"]["suite"])
        assert all(a["robust_fraction"] == 1.0 for a in attacks.values())  # the model no attack fools
    md = (tmp_path / "gpu_check.md").read_text()
    assert "## attacks: ok" in md and "Table 2 row" in md


def test_unfoolable_model_keeps_class_zero_under_any_input():
    torch.manual_seed(0)
    model = gpu_check.Unfoolable(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10)))
    x = torch.rand(64, 3, 2, 2) * 100
    assert (model(x).argmax(1) == 0).all()
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[:, 1].sum(), x)
    assert g.abs().sum() > 0  # gradients still flow: attacks iterate as on a real model


def test_reduced_budgets_cut_every_iteration_count_and_nothing_else():
    params = gpu_check.preset_params()
    aa = params.attack.settings["autoattack"]
    cut = gpu_check.reduced(aa, 0.05)
    assert (cut.steps, cut.square_queries) == (5, 250) and cut.eps == aa.eps and cut.n_target_classes == 9
    assert gpu_check.reduced(params.attack.settings["fgsm"], 0.05) == params.attack.settings["fgsm"]


def test_an_unknown_section_is_an_error(tmp_path, capsys):
    assert gpu_check.main([str(tmp_path), "--sections", "bench,nope"]) == 2
    assert "--sections" in capsys.readouterr().err


def test_targets_compare_each_measured_value_with_its_limit():
    sections = {"training": {"ok": True, "pgd_at": {"seconds_per_cifar_epoch": 44.0},
                             "otjr": {"seconds_per_cifar_epoch": 60.0}},
                "bench": {"ok": False},
                "attacks": {"ok": True, "bf16": {"table2_row_minutes_half_robust": 19.5}}}
    t = gpu_check.targets(sections)
    assert t["PGD-AT s per CIFAR-10 epoch"]["met"] is True
    assert t["OTJR s per CIFAR-10 epoch"]["met"] is False
    assert t["fast / reference, PGD-AT step"] == {"value": None, "limit": 3.0, "kind": "min", "met": None}
    assert t["Table 2 row minutes, bf16 path, half robust"]["met"] is True
