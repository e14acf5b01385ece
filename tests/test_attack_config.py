"""Attacks are config: the registry holds kinds, params.yaml the named instances and one threat model.

A new instance (PGD-50) is a params.yaml entry: it runs, gets its record entry, its sanity
treatment by kind, and its column in the report and metrics/summary.json with no code change.
"""

from __future__ import annotations

import pytest

from conftest import REPO, run_cli, write_params
from pipeline.attacks import build
from pipeline.config import load_params
from pipeline.core.errors import UserError

PGD50 = {"attack": "pgd", "norm": "linf", "step": 0.05, "steps": 50, "random_start": True}


def _error(project, overrides: dict) -> str:
    write_params(project, overrides)
    with pytest.raises(UserError) as err:
        load_params()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_an_instance_is_its_kind_with_its_own_settings(project):
    write_params(project, {"attack.pgd50": PGD50, "attack.suite": ["pgd20", "pgd50", "fgsm"]})
    p = load_params()
    assert p.attack.kinds == {**p.attack.kinds, "pgd20": "pgd", "pgd50": "pgd", "fgsm": "fgsm", "l2_pgd": "pgd"}
    pgd20, pgd50 = (build(p.attack, n, 10) for n in ("pgd20", "pgd50"))
    assert (pgd50.name, pgd50.kind, type(pgd50)) == ("pgd50", "pgd", type(pgd20))
    assert pgd50.params.steps == 50 and pgd20.params.steps == 20 and pgd50.cost == 2.5
    assert pgd50.outranks(pgd20) and not pgd20.outranks(pgd50)  # PGD-20's iterates are PGD-50's first ones


@pytest.mark.parametrize("overrides, message", [
    ({"attack.pgd50": {**PGD50, "attack": "pgdx"}}, "'attack.pgd50.attack': unknown kind 'pgdx'; kinds: autoattack"),
    ({"attack.pgd50": {k: v for k, v in PGD50.items() if k != "attack"}}, "'attack.pgd50': no kind; add `attack: <kind>`"),
    ({"attack.pgd50": {**PGD50, "decay": 1.0}}, "'attack.pgd50.decay'"),  # a setting its kind does not take
    ({"attack.suite": ["pgd20", "pgd50"]}, "'attack.suite': unknown attack 'pgd50'; configured: "),
    ({"threat": None}, "'threat'"),
    ({"threat.linf": 2}, "'threat.linf'"),
])
def test_bad_instances_are_one_line_errors(project, overrides, message):
    assert message in _error(project, overrides)


def test_the_threat_model_is_stated_once_and_an_instance_may_override_it(project):
    before = load_params()
    write_params(project, {"threat.linf": 0.1, "attack.mim.eps": 0.3})
    after = load_params()
    linf = [n for n in before.attack.suite if before.attack.settings[n].norm == "linf"]
    assert before.adversary.eps == before.analysis.eps == 0.2 and after.adversary.eps == after.analysis.eps == 0.1
    assert {n: before.attack.settings[n].eps for n in linf} == dict.fromkeys(linf, 0.2)
    assert {n: after.attack.settings[n].eps for n in linf} == {**dict.fromkeys(linf, 0.1), "mim": 0.3}
    assert after.attack.settings["l2_pgd"].eps == after.attack.settings["deepfool"].eps == 0.75  # threat.l2
    write_params(project, {"threat.l2": None, "attack.suite": ["l2_pgd"]})
    with pytest.raises(UserError, match=r"'attack.\w+.eps': no l2 budget; set it or threat.l2"):
        load_params()


def test_old_methods_key_names_the_new_one(project):
    text = (project / "params.yaml").read_text().replace("\nruns:", "\nmethods:")
    (project / "params.yaml").write_text(text)
    proc = run_cli("stage", "attack", "--dataset", "digits", "--method", "xe", cwd=project)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("'methods' is now 'runs' (the runs trained, "
                                                                  "evaluated and aggregated)")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_pgd50_entry_gets_its_record_report_and_summary_column_without_code(digits):
    from pipeline import api
    from pipeline.core import paths
    from pipeline.core.io import read_json

    write_params(digits, {"runs": ["xe"], "attack.n": 32, "attack.suite": ["fgsm", "pgd20", "pgd50"],
                          "attack.pgd50": PGD50, "train.epochs": 1, "train.eval_n": 16, "model.args.width": 8,
                          "sanity.n": 32, "analysis.n": 8, "analysis.ratio_n": 4,
                          "analysis.cross_section.resolution": 5})
    api.train("digits", "xe")
    record = read_json(api.attack("digits", "xe"))
    assert record["pgd50"]["params"]["steps"] == 50 and record["pgd50"]["implementation"] == record["pgd20"]["implementation"]
    assert record["pgd50"]["accuracy"] <= record["pgd20"]["accuracy"]  # same seed: PGD-20's iterates come first
    assert record["worst_case"]["attacks"] == ["fgsm", "pgd20", "pgd50"]
    path, _ = api.sanity("digits", "xe")
    rule3 = next(r for r in read_json(path)["rules"] if r["id"] == 3)  # iterative (by kind) vs FGSM
    assert rule3["figures"]["pgd50"] == record["pgd50"]["accuracy"]
    api.analyze("digits")
    api.report()
    api.aggregate()
    assert read_json(paths.summary_json())["xe"]["digits"]["pgd50"] == round(record["pgd50"]["accuracy"], 2)
    report = (paths.report_dir() / "report.md").read_text().splitlines()
    header = next(line for line in report if line.startswith("| Run") and "PGD-20" in line)
    assert [c.strip() for c in header.split("|")][2:6] == ["Clean", "PGD-20", "FGSM", "pgd50"]


def test_the_repository_default_names_the_kind_of_every_renamed_instance():
    """Today's record keys stay: pgd20, pgd100 and l2_pgd are instances of the kind pgd."""
    kinds = load_params(REPO / "params.yaml").attack.kinds
    assert [kinds[n] for n in ("pgd20", "pgd100", "l2_pgd", "fgsm", "autoattack")] == ["pgd"] * 3 + ["fgsm", "autoattack"]
