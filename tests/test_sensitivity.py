"""Paper Table 8 from `dvc exp show --json` output (the shape dvc 3.x prints, trimmed)."""

from __future__ import annotations

import json

from conftest import run_cli
from pipeline.core import paths
from pipeline.report.sensitivity import rows_from, sensitivity_report

SHA = "d6f2abf53d0657f0868d0d329c8622f3458a0867"


def headline(accuracy: dict, n: int = 1000) -> dict:
    """metrics/headline.json's entry of one run: each accuracy with a made-up interval and its images."""
    out = {"sanity": "pass"}
    for k, v in accuracy.items():
        out.update({k: v, f"{k}_low": v - 3, f"{k}_high": v + 2, f"{k}_n": n})
    return out


def rev(rev: str, name: str | None, lambda_j, lambda_sw=64, k=32, accuracy=None, dataset="cifar10",
        model="wrn34_10", error=None, split=None, n=1000) -> dict:
    params = {"lambda_j": lambda_j, "lambda_sw": lambda_sw, "num_projections": k, "model": {"name": model, "args": {}},
              "attack": {"n": n}, **({"eval_split": split} if split else {})}
    data = {"rev": rev, "timestamp": None, "params": {"params.yaml": {"data": params}},
            "metrics": {"metrics/headline.json": {"data": {"otjr": {dataset: headline(accuracy or {}, n)},
                                                           "xe": {dataset: headline({"clean": 94.0}, n)}}}}}
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
        # still running: DVC shows its params with the baseline's metrics, which are not its results
        {"name": "k64-running", "executor": {"state": "running"},
         "revs": [rev("e" * 40, "k64-running", 0.002, k=64, accuracy={"clean": 84.0, "pgd20": 55.5})]},
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
    assert rows[0]["interval"]["pgd20"] == [52.5, 57.5] and rows[0]["n"]["clean"] == 1000
    assert {r["split"] for r in rows} == {"test"}  # params without eval_split: the test split


def test_table_puts_the_papers_row_beside_matching_settings(project, tmp_path):
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(exp_show()))
    text = sensitivity_report(saved)
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert cells[0] == ["lambda_J", "lambda_SW", "K", "Model", "Experiment", "Clean (n 1000)", "PGD-20 (n 1000)",
                        "PGD-100 (n 1000)", "AutoAttack (n 1000)"]
    assert "## cifar10 (test split)" in text and "Picked" not in text  # nothing is chosen on the test split
    body = cells[2:]
    assert [r[4] for r in body] == ["lj-small", "k16", "paper, Table 8", "ours - paper", "main", "paper, Table 8",
                                    "ours - paper"]  # sorted by (lambda_J, lambda_SW, K)
    main = body.index(next(r for r in body if r[4] == "main"))
    assert body[main][:3] == ["0.002", "64", "32"]
    assert body[main + 1][5:] == ["84.53", "55.07", "54.69", "52.41"]
    assert body[main + 2][5:] == ["-0.53", "+0.43", "+0.31", "-0.41"]
    assert body[0][5:] == ["86.00 [83.0, 88.0]", "50.00 [47.0, 52.0]", "-", "-"]  # 1e-05: not a paper setting
    assert body[main][5] == "84.00 [81.0, 86.0]"
    assert json.loads(paths.sensitivity_result("json").read_text())["rows"][0]["rev"] == "main"
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


def test_validation_rows_are_their_own_table_and_name_the_setting_picked(project, tmp_path):
    base = rev(SHA, "main", 0.002, dataset="fashion_mnist", model="strided_cnn", split="val",
               accuracy={"clean": 80.0, "pgd20": 70.0, "autoattack": 60.0})
    base["experiments"] = [
        {"name": n, "revs": [rev(c * 40, n, lj, dataset="fashion_mnist", model="strided_cnn", split="val", n=500,
                                 accuracy=acc)]}
        for n, c, lj, acc in [("lj-0.01", "a", 0.01, {"clean": 79.0, "pgd20": 71.0, "autoattack": 61.5}),
                              ("lj-0.05", "b", 0.05, {"clean": 82.0, "pgd20": 71.0, "autoattack": 61.5}),
                              ("lj-0", "c", 0, {"clean": 85.0, "pgd20": 65.0, "autoattack": 55.0})]]
    test_row = rev("d" * 40, "on-test", 0.5, dataset="fashion_mnist", model="strided_cnn",
                   accuracy={"clean": 99.0, "autoattack": 99.0})  # far better, but on the test split: never picked
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps([base, test_row]))
    text = sensitivity_report(saved)
    val_part = text.split("## fashion_mnist (validation split)")[1].split("## ")[0]
    assert "on-test" not in val_part and "on-test" in text.split("## fashion_mnist (test split)")[1]
    # tie on AutoAttack (61.5) between lj-0.01 and lj-0.05: the higher clean accuracy wins
    assert "Picked on the validation split: lambda_J 0.05, lambda_SW 64, K 32 (experiment lj-0.05)" in val_part
    assert "61.50 [58.5, 63.5] (n 500)" in val_part and "(n 1000)" in val_part  # sizes differ: n in each cell
    saved_json = json.loads(paths.sensitivity_result("json").read_text())
    assert saved_json["picked"]["fashion_mnist/val"]["rev"] == "lj-0.05"
    assert "fashion_mnist/test" not in saved_json["picked"]
