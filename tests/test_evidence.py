"""Intervals and the claims table on a fake finished project: summary_stats.json, summary.md and the report,
checked against scipy / statsmodels computed here from the flags the fake project holds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from conftest import TINY, write_params
from fake_results import CLAIMS_ACC, CLAIMS_N, build_claims_world
from pipeline.config import load_params
from pipeline.core import paths
from pipeline.report import evidence
from pipeline.report.aggregate import aggregate
from pipeline.report.build import build_report
from pipeline.report.tables import threat_worst_case_table

DS = "fashion_mnist"
EVALUATED = list(CLAIMS_ACC)  # otjr trades pgd_at alp opt_jr rand_jr
#: (claim statement start, expected verdict) for the paired claims, by the fake world's design
PAIRED = {
    ("otjr", "trades"): "supported",
    ("otjr", "pgd_at"): "contradicted",
    ("otjr", "alp"): "inconclusive",
    ("opt_jr", "rand_jr"): "supported",
    ("rand_jr", "pgd_at"): "supported",
    ("pgd_at", "rand_jr"): "supported",
}


@pytest.fixture
def world(project):
    flags = build_claims_world(DS)
    return project, flags


def _params(project, methods):
    write_params(project, {**TINY, "datasets": [DS], "runs": methods})
    return load_params()


def _reference(flags, claim):
    """b, c, p (scipy's exact binomial test) of a paired claim, from the raw flags."""
    def measure(run):
        f = {k: v.numpy() for k, v in flags[run].items()}
        if claim.measure == evidence.WHITE_BOX:
            return f["clean"] & f["pgd20"] & f["fgsm"]  # the white-box attacks in the fake records
        return f[claim.measure]

    a, b = measure(claim.a), measure(claim.b)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = sps.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return only_a, only_b, p


def test_summary_stats_holds_intervals_and_claims_matching_the_references(world):
    project, flags = world
    text = aggregate(_params(project, EVALUATED))
    summary = json.loads(paths.summary_json().read_text())
    assert set(summary) == set(EVALUATED) and isinstance(summary["otjr"][DS]["clean"], float)  # schema unchanged
    out = json.loads(paths.summary_stats_json().read_text())
    entry = out["accuracy"]["otjr"][DS]["autoattack"]
    k = int(flags["otjr"]["autoattack"].sum())
    ci = sps.binomtest(k, CLAIMS_N).proportion_ci(method="exact")
    wi = sps.binomtest(k, CLAIMS_N).proportion_ci(method="wilson")
    assert (entry["n_correct"], entry["n"]) == (k, CLAIMS_N)
    assert entry["clopper_pearson"] == pytest.approx([100 * ci.low, 100 * ci.high], abs=1e-8)
    assert entry["wilson"] == pytest.approx([100 * wi.low, 100 * wi.high], abs=1e-8)

    rows = out["claims"][DS]
    paired = [(r, c) for r, c in zip(rows, evidence.CLAIMS) if c.kind == "paired"]
    measured = [(r, c) for r, c in paired if r["verdict"] != "not run"]
    refs = [_reference(flags, c) for _, c in measured]
    holm = multipletests([p for _, _, p in refs], method="holm")[1]
    for (row, claim), (only_a, only_b, p), p_holm in zip(measured, refs, holm):
        assert (row["a_only"], row["b_only"]) == (only_a, only_b)
        assert row["p_value"] == pytest.approx(p, rel=1e-9) and row["p_holm"] == pytest.approx(p_holm, rel=1e-9)
        assert row["difference"] == pytest.approx(100 * (only_a - only_b) / CLAIMS_N)
        assert row["interval"][0] < row["difference"] < row["interval"][1]
        lo, hi = row["conditional_interval"]
        assert lo <= row["difference"] <= hi and (lo > 0 or hi < 0) == (p < 0.05)
        assert row["verdict"] == PAIRED[(claim.a, claim.b)], claim.statement
    assert {(c.a, c.b) for r, c in paired if r["verdict"] == "not run"} == {("otjr", "sat")}
    descriptive = [(r, c) for r, c in zip(rows, evidence.CLAIMS) if c.kind != "paired"]
    assert [r["verdict"] for r, c in descriptive if c.kind == "epochs"] == ["not run"] * 2  # sat not among the methods
    # otjr is smallest among Table 12's runs; among all runs analysed opt_jr (also JR-trained) is smallest
    assert [r["verdict"] for r, c in descriptive if c.kind == "gradient"] == ["holds", "holds"]
    assert "k=0: opt_jr" in descriptive[-1][0]["detail"] and "k=0: otjr" in descriptive[-2][0]["detail"]
    assert "Claims of the paper" in text and "| Table 2 | otjr above trades under AutoAttack | 400 |" in text
    assert "95% Clopper-Pearson intervals" in text


def test_report_opens_each_dataset_with_the_claims_table(world):
    project, flags = world
    report = build_report(_params(project, EVALUATED + ["sat", "sw"])).read_text()
    section = report[report.index(f"## {DS}"):]
    assert section.index("### Claims of the paper, tested") < section.index("### Robust accuracy")
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    by_claim = {ln.split(" | ")[1]: ln for ln in lines if ln.startswith(("| Table", "| Fig."))}
    assert "not run (no attack results for sat)" in by_claim["otjr above sat under AutoAttack"]
    assert "**supported**" in by_claim["otjr above trades under AutoAttack"]
    assert "**contradicted**" in by_claim["otjr above pgd_at under AutoAttack"]
    fig7 = {k: v for k, v in by_claim.items() if "fewer epochs" in k}
    # sw: 90% of min(45, 40) = 36 first reached at epoch 3, sat at epoch 5; otjr only at epoch 5
    assert "sw 3, sat 5" in fig7["sw (SW-based) reaches its robust accuracy in fewer epochs than sat"]
    assert "holds (descriptive)" in fig7["sw (SW-based) reaches its robust accuracy in fewer epochs than sat"]
    assert "does not hold (descriptive)" in fig7["otjr (SW-based) reaches its robust accuracy in fewer epochs than sat"]
    assert "### 95% intervals (%) of these accuracies" in section
    k = int(flags["rand_jr"]["clean"].sum())
    ci = sps.binomtest(k, CLAIMS_N).proportion_ci(method="exact")
    assert f"{100 * ci.low:.1f}-{100 * ci.high:.1f}" in section


def test_white_box_worst_case_takes_only_white_box_attacks():
    flags = {"clean": [True, True, True, False], "pgd20": [True, False, True, False],
             "fgsm": [True, True, False, False], "square": [False, True, True, True], "autoattack": [False] * 4}
    kinds = {"pgd20": "pgd", "fgsm": "fgsm", "square": "square", "autoattack": "autoattack", "pgd50": "pgd"}
    white_box = evidence.white_box_attacks(kinds)
    assert sorted(white_box) == ["fgsm", "pgd20", "pgd50"]  # instances, by their kind's access
    assert evidence.measure_flags(flags, evidence.WHITE_BOX, white_box) == [True, False, False, False]
    assert evidence.measure_flags(flags, "square", white_box) == flags["square"]


def test_epochs_to_target_and_missing_curves():
    assert evidence.epochs_to([(1, 5.0), (2, 9.0), (3, 12.0)], 9.0) == 2
    assert evidence.epochs_to([(1, 5.0)], 9.0) is None
    claim = next(c for c in evidence.CLAIMS if c.kind == "epochs")
    assert evidence._epochs(claim, {}).verdict == "not run"


def test_several_seeds_pool_discordant_pairs(monkeypatch, world):
    """Two seeds per run (issue: seeds expansion): the claim pools their discordant pairs and reports the spread."""
    project, flags = world
    two = {r: [{k: v.tolist() for k, v in f.items()}] * 2 for r, f in flags.items()}
    white_box = ["fgsm", "pgd20"]  # the white-box attacks of the fake records
    results = evidence.evaluate_claims(two, {}, None, white_box)
    one = evidence.evaluate_claims({r: f[:1] for r, f in two.items()}, {}, None, white_box)
    for r2, r1 in zip(results, one):
        if r1.comparison is not None:
            assert r2.comparison.pooled.a_only == 2 * r1.comparison.pooled.a_only
            assert r2.comparison.seeds == 2 and r2.comparison.seed_std == 0.0
            assert r2.comparison.p_value <= r1.comparison.p_value
    np.testing.assert_equal(len(results), len(evidence.CLAIMS))


def test_gradient_claims_hold_only_when_a_named_run_is_smallest_at_every_step():
    def run(values):
        return {"input_gradient": {"steps": [0, 5], "mean_abs": values}}

    analysis = {"runs": {"otjr": run([1.0, 2.0]), "pgd_at": run([3.0, 1.5]), "xe": run([9.0, 9.0])}}
    table12, jr = [c for c in evidence.CLAIMS if c.kind == "gradient"]
    result = evidence._gradient(table12, analysis)
    assert result.verdict == "does not hold" and "smallest at 1 of 2" in result.detail and "k=5: pgd_at" in result.detail
    analysis["runs"]["rand_jr"] = run([0.5, 1.0])
    assert evidence._gradient(jr, analysis).verdict == "holds"
    assert evidence._gradient(table12, {"runs": {"pgd_at": run([1.0, 1.0])}}).verdict == "not run"


def _entry(norm, eps, n):
    return {"norm": norm, "params": {"eps": eps}, "validity": {}, "n": n}


def test_worst_case_per_threat_model_matches_a_loop_over_the_images():
    """Each ball on its own: correct and robust to every attack of it, on the images all its attacks saw."""
    rng = np.random.default_rng(3)
    n = 40
    record = {"n": n, "clean": {"accuracy": 0.0}, "pgd20": _entry("linf", 0.1, 40), "square": _entry("linf", 0.1, 25),
              "l2_pgd": _entry("l2", 1.5, 30), "deepfool": _entry("l2", 1.5, 40), "fgsm": _entry("linf", 0.05, 40)}
    flags = {"clean": rng.random(n) < 0.9}
    for name in ("pgd20", "square", "l2_pgd", "deepfool", "fgsm"):
        m = record[name]["n"]
        flags[name] = [bool(flags["clean"][i] and rng.random() < 0.7) for i in range(m)]
    flags["clean"] = [bool(x) for x in flags["clean"]]
    found = evidence.threat_worst_cases(record, flags)
    assert set(found) == {"linf eps 0.1", "l2 eps 1.5", "linf eps 0.05"}
    for label, names, m in (("linf eps 0.1", ["pgd20", "square"], 25), ("l2 eps 1.5", ["l2_pgd", "deepfool"], 30),
                            ("linf eps 0.05", ["fgsm"], 40)):
        k = 0
        for i in range(m):
            if flags["clean"][i] and all(flags[a][i] for a in names):
                k += 1
        entry = found[label]
        assert (entry["n"], entry["n_correct"], sorted(entry["attacks"])) == (m, k, sorted(names))
        lo, hi = sps.binomtest(k, m).proportion_ci(0.95, method="exact")
        assert entry["clopper_pearson"] == pytest.approx([100 * lo, 100 * hi], abs=1e-9)


def test_threat_table_only_when_the_suite_spans_several_balls():
    from pipeline.report.collect import RunResults

    one = {"n": 4, "pgd20": _entry("linf", 0.1, 4), "fgsm": _entry("linf", 0.1, 4)}
    flags = {"clean": [True] * 4, "pgd20": [True, False, True, True], "fgsm": [True] * 4}
    run = RunResults("d", "r", one, None, None, {})
    assert threat_worst_case_table([run], {"r": flags}) == []
    two = {**one, "l2_pgd": _entry("l2", 1.5, 4)}
    run = RunResults("d", "r", two, None, None, {})
    lines = threat_worst_case_table([run], {"r": {**flags, "l2_pgd": [False, False, True, True]}})
    assert lines[0].split(" | ")[1:] == ["l2 eps 1.5", "linf eps 0.1 |"]
    assert lines[2].startswith("| r | 50.00 [") and "75.00 [" in lines[2]
