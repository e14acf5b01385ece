"""Paper Table 8 from `dvc exp show --json` output (the shape dvc 3.x prints, trimmed)."""

from __future__ import annotations

import json

from conftest import run_cli
from pipeline.core import paths
from pipeline.report.sensitivity import rows_from, sensitivity_report

SHA = "d6f2abf53d0657f0868d0d329c8622f3458a0867"


def rev(rev: str, name: str | None, lambda_j, lambda_sw=64, k=32, accuracy=None, dataset="cifar10",
        model="wrn34_10", error=None) -> dict:
    data = {"rev": rev, "timestamp": None,
            "params": {"params.yaml": {"data": {"lambda_j": lambda_j, "lambda_sw": lambda_sw, "num_projections": k,
                                                "model": {"name": model, "args": {}}}}},
            "metrics": {"metrics/summary.json": {"data": {"otjr": {dataset: accuracy or {}},
                                                          "xe": {dataset: {"clean": 94.0}}}}}}
    return {"rev": rev, "name": name, "data": data, "error": error, "experiments": None}


def exp_show() -> list:
    base = rev(SHA, "main", 0.002, accuracy={"clean": 84.0, "pgd20": 55.5, "pgd100": 55.0, "autoattack": 52.0})
    base["experiments"] = [
        {"name": "lj-small", "executor": {"state": "success"},
         "revs": [rev("a" * 40, "lj-small", "1e-05", accuracy={"clean": 86.0, "pgd20": 50.0})]},
        {"name": "k16", "executor": {"state": "success"},
         "revs": [rev("b" * 40, "k16", 0.002, k=16, accuracy={"clean": 82.0, "pgd20": 55.0, "autoattack": 51.0})]},
        {"name": "broken", "executor": {"state": "failed"},
         "revs": [{"rev": "c" * 40, "name": "broken", "data": {}, "error": {"msg": "failed"}, "experiments": None}]},
    ]
    # `dvc exp run` leaves the last experiment in the workspace too: listed once, under its name
    workspace = rev("workspace", None, 0.002, k=16, accuracy={"clean": 82.0, "pgd20": 55.0, "autoattack": 51.0})
    return [workspace, base]


def test_rows_come_from_every_successful_revision_once():
    rows = rows_from(exp_show())
    assert [r["rev"] for r in rows] == ["main", "lj-small", "k16"]
    small = rows[1]
    assert small["lambda_j"] == 1e-05 and small["num_projections"] == 32.0  # '1e-05' (YAML 1.1 string) is a number
    assert rows[0]["accuracy"] == {"clean": 84.0, "pgd20": 55.5, "pgd100": 55.0, "autoattack": 52.0}


def test_table_puts_the_papers_row_beside_matching_settings(project, tmp_path):
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(exp_show()))
    text = sensitivity_report(saved)
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert cells[0] == ["lambda_J", "lambda_SW", "K", "Model", "Experiment", "Clean", "PGD-20", "PGD-100", "AutoAttack"]
    body = cells[2:]
    assert [r[4] for r in body] == ["lj-small", "k16", "paper, Table 8", "ours - paper", "main", "paper, Table 8",
                                    "ours - paper"]  # sorted by (lambda_J, lambda_SW, K)
    main = body.index(next(r for r in body if r[4] == "main"))
    assert body[main][:3] == ["0.002", "64", "32"]
    assert body[main + 1][5:] == ["84.53", "55.07", "54.69", "52.41"]
    assert body[main + 2][5:] == ["-0.53", "+0.43", "+0.31", "-0.41"]
    assert body[0][5:] == ["86.00", "50.00", "-", "-"]  # lambda_j 1e-05 is not a paper setting
    assert json.loads(paths.sensitivity_result("json").read_text())[0]["rev"] == "main"
    assert paths.sensitivity_result("md").read_text() == text


def test_other_models_are_not_compared_with_the_paper():
    rows = rows_from([rev(SHA, "main", 0.002, model="small_cnn", dataset="digits", accuracy={"clean": 80.0})])
    from pipeline.report.sensitivity import markdown, paper_row

    assert paper_row(rows[0]) is None
    assert "paper" not in markdown(rows).split("## digits")[1]


def test_cli_reads_a_saved_exp_show(project, tmp_path):
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(exp_show()))
    proc = run_cli("stage", "sensitivity", "--exp-json", str(saved), cwd=project, check=True)
    assert "| 0.002 | 64 | 16 | wrn34_10 | k16 |" in proc.stdout
    bad = run_cli("stage", "sensitivity", "--exp-json", str(tmp_path / "absent.json"), cwd=project)
    assert bad.returncode == 2 and "not found" in bad.stderr and "Traceback" not in bad.stderr
