"""`otjr bench` writes a self-describing result; a training process does not pay for imports it does not use."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO, run_cli


def test_bench_prints_a_table_and_writes_self_describing_json(project):
    out = project / "bench.json"
    proc = run_cli("bench", "--model", "small_cnn:width=4@1x8x8", "--batch-size", "8", "--steps", "2", "--warmup", "0",
                   "--jacobian", "exact,finite_difference", "--device", "cpu", "--out", str(out), cwd=project, check=True)
    result = json.loads(out.read_text())
    assert {"command", "date", "device", "versions", "settings", "rows", "ratios"} <= result.keys()
    assert result["device"]["type"] == "cpu" and result["device"]["torch_threads"] >= 1
    assert result["command"].startswith("otjr bench") and result["versions"]["torch"]
    cases = {(r["method"], r["path"], r["jacobian"]) for r in result["rows"]}
    assert cases == {("pgd_at", "fast", "-"), ("pgd_at", "reference", "-"), ("otjr", "fast", "exact"),
                     ("otjr", "fast", "finite_difference"), ("otjr", "reference", "exact")}
    for row in result["rows"]:
        assert len(row["steps_ms"]) == 2 and row["median_ms"] > 0 and row["images_per_s"] > 0
        assert row["gflop_per_image"] > 0
    ratios = result["ratios"]["small_cnn(width=4) 1x8x8"]
    # the reference's attack also computes weight gradients: more counted work, and the FLOP ratio is known
    assert 1.2 < ratios["otjr/pgd_at fast (counted FLOPs)"] < 1.35
    assert "reference/fast pgd_at (wall)" in ratios and "otjr/pgd_at fast (wall)" in ratios
    assert "| small_cnn(width=4) 1x8x8 | otjr | reference | exact |" in proc.stdout


def test_bench_rejects_bad_input_in_one_line(project):
    proc = run_cli("bench", "--model", "small_cnn:width", "--out", str(project / "b.json"), cwd=project)
    assert proc.returncode == 2 and "--model" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("bench", "--methods", "madry", "--out", str(project / "b.json"), cwd=project)
    assert proc.returncode == 2 and "unknown method 'madry'" in proc.stderr


def test_training_does_not_import_torchvision(digits):
    """torchvision costs a stage process ~1.6 s (it imports torch._dynamo): only the sources and models that use it load it."""
    code = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from pipeline import api\n"
        "api.train('digits', 'otjr-awp')\n"
        "print('torchvision' in sys.modules)\n"
    )
    env = {"PYTHONPATH": str(REPO), "OTJR_ROOT": str(digits), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=digits, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_set_params_sets_dotted_keys_as_yaml_and_keeps_comments(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 0  # first seed\nseeds: [1, 2]\ntrain:\n  epochs: 8  # eight\n  lr: 0.05\n")
    tool = [sys.executable, str(REPO / "bench" / "set_params.py"), str(path)]
    subprocess.run([*tool, "train.epochs=1", "seeds=[]", "data={val_fraction: 0.05}"], check=True)
    text = path.read_text()
    assert "epochs: 1  # eight" in text and "seed: 0  # first seed" in text and "lr: 0.05" in text
    assert "seeds: []" in text and "val_fraction: 0.05" in text
    bad = subprocess.run([*tool, "model.args.width=4"], capture_output=True, text=True)
    assert bad.returncode != 0 and "model.args.width: no key 'model'" in bad.stderr
    assert "epochs: 1  # eight" in path.read_text()  # unchanged by the refused call


def test_publish_report_puts_a_published_sweep_in_the_sensitivity_section(tmp_path):
    spec = importlib.util.spec_from_file_location("publish_report", REPO / "bench" / "publish_report.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    sweep = tmp_path / "sweep.md"
    sweep.write_text("# Sensitivity\n\n<!-- written by a tool -->\n- Command: `sweep.sh`\n\n## digits (val)\n\n| a |\n")
    body = ["## Claims", "", "rows", "", tool.SENSITIVITY, "", "Built from queued experiments ...", "",
            "## Settings and versions", "", "v"]
    out = tool.with_sweep(body, sweep)
    section = out[out.index(tool.SENSITIVITY):out.index("## Settings and versions")]
    assert "Built from queued experiments ..." not in out and "- Command: `sweep.sh`" in section
    assert "### digits (val)" in section and "| a |" in section and "# Sensitivity" not in out
    assert out[:5] == body[:5] and out[-3:] == body[-3:]  # the rest as it was
    with pytest.raises(SystemExit, match="no section"):
        tool.with_sweep(["## Claims"], sweep)
