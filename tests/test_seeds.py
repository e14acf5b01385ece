"""Further seeds (`seeds:`): validation, their file layout, and the summary over seeds — mean accuracies in
summary.json (same schema), per-seed values, spread and t-intervals in summary_stats.json, claims pooled."""

from __future__ import annotations

import json

import pytest
from scipy import stats as sps

from conftest import TINY, run_cli, write_params
from fake_results import CLAIMS_ACC, CLAIMS_N, attack_record, build_claims_world, claims_flags, sanity_record, write
from pipeline.core import paths
from pipeline.core.errors import UserError
from pipeline.config import load_params
from pipeline.report.aggregate import aggregate

DS = "fashion_mnist"


@pytest.mark.parametrize("seeds, message", [([0, 1], "seed 0 twice"), ([1, 1], "seed 1 twice"),
                                            ([-1], "seeds")])
def test_seeds_are_further_distinct_seeds(project, seeds, message):
    write_params(project, {**TINY, "seeds": seeds})
    with pytest.raises(UserError, match=message):
        load_params()


def test_default_is_one_seed_and_further_seeds_have_their_own_folders(project):
    p = load_params()
    assert p.seeds == () and p.all_seeds == (0,) and p.runs == p.runs
    plain = paths.checkpoint("digits", "otjr")
    with paths.seed_scope(2):
        assert paths.checkpoint("digits", "otjr") == plain.parent.with_name("digits.seed2") / "otjr.safetensors"
        assert paths.attack_result("digits", "otjr").parent.name == "digits.seed2"
        assert paths.lock_file("train", "digits", "otjr").name == "train.digits.seed2.otjr.lock"
    assert paths.checkpoint("digits", "otjr") == plain  # back to the first seed's layout


def _second_seed(dataset: str) -> dict:
    """Seed 1's records and flags for CLAIMS_ACC's runs, under <dataset>.seed1/."""
    from pipeline.core.io import save_tensors

    written = {}
    with paths.seed_scope(1):
        for run, acc in CLAIMS_ACC.items():
            shifted = {k: min(1.0, v + 0.02) for k, v in acc.items()}  # a slightly different model per seed
            flags = claims_flags(shifted, seed=1)
            written[run] = flags
            pct = {k: 100.0 * int(v.sum()) / CLAIMS_N for k, v in flags.items()}
            record = attack_record(dataset, run, "small_cnn", pct, epochs=5, n=CLAIMS_N)
            write(paths.attack_result(dataset, run), {**record, "seed": 1})
            save_tensors(paths.attack_flags(dataset, run), flags, {"n": CLAIMS_N})
            write(paths.sanity_result(dataset, run), sanity_record(dataset, run, [pct["clean"], 40, 20, 1, 0]))
    return written


def test_summary_over_two_seeds(project):
    first = build_claims_world(DS)
    second = _second_seed(DS)
    runs = list(CLAIMS_ACC)
    write_params(project, {**TINY, "datasets": [DS], "runs": runs, "seeds": [1]})
    text = aggregate(load_params())

    pct = lambda flags, k: 100.0 * int(flags[k].sum()) / CLAIMS_N  # noqa: E731
    summary = json.loads(paths.summary_json().read_text())
    for run in runs:
        for k in ("clean", "autoattack", "worst_case"):
            assert summary[run][DS][k] == round((pct(first[run], k) + pct(second[run], k)) / 2, 2)

    stats = json.loads(paths.summary_stats_json().read_text())
    assert stats["seeds"] == [0, 1]
    entry = stats["accuracy"]["otjr"][DS]["autoattack"]
    values = [pct(first["otjr"], "autoattack"), pct(second["otjr"], "autoattack")]
    assert entry["seed_values"] == pytest.approx(values) and entry["seeds"] == [0, 1]
    ref = sps.t.interval(0.95, 1, loc=sum(values) / 2, scale=sps.sem(values))
    assert entry["seed_interval"] == pytest.approx([max(ref[0], 0.0), min(ref[1], 100.0)], rel=1e-9)  # clamped
    assert entry["seed_std"] == pytest.approx(float(sps.tstd(values)))
    assert [e["n_correct"] for e in entry["per_seed"]] == [int(first["otjr"]["autoattack"].sum()),
                                                           int(second["otjr"]["autoattack"].sum())]

    row = next(r for r in stats["claims"][DS] if (r["a"], r["b"], r["measure"]) == ("otjr", "trades", "autoattack"))
    a = [f["otjr"]["autoattack"].numpy() for f in (first, second)]
    b = [f["trades"]["autoattack"].numpy() for f in (first, second)]
    only_a = sum(int((x & ~y).sum()) for x, y in zip(a, b))
    only_b = sum(int((~x & y).sum()) for x, y in zip(a, b))
    assert (row["seeds"], row["a_only"], row["b_only"], row["n"]) == (2, only_a, only_b, 2 * CLAIMS_N)
    assert row["p_value"] == pytest.approx(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue, rel=1e-9)
    assert len(row["seed_differences"]) == 2 and row["seed_interval"] is not None
    assert "seeds 0, 1 (mean over seeds)" in text and "Student-t" in text


def test_train_with_a_further_seed_writes_its_own_files(digits):
    write_params(digits, {**TINY, "train.epochs": 1, "seeds": [1]})
    run_cli("stage", "train", "--dataset", "digits", "--run", "xe", "--seed", "1", cwd=digits, check=True)
    assert (digits / "models" / "digits.seed1" / "xe.safetensors").is_file()
    assert (digits / "metrics" / "train" / "digits.seed1" / "xe" / "metrics.json").is_file()
    assert not (digits / "models" / "digits" / "xe.safetensors").exists()
    from pipeline.models.checkpoint import read_checkpoint

    _, info = read_checkpoint(digits / "models" / "digits.seed1" / "xe.safetensors")
    assert info["settings"]["seed"] == 1


def test_seed_intervals_are_student_t_clamped_to_0_100():
    from pipeline.report.aggregate import seed_intervals

    def record(seed, k_pgd, k_clean):
        return {"seed": seed, "n": 48, "pgd20": {"n_correct": k_pgd}, "clean": {"n_correct": k_clean}}

    out = seed_intervals([record(0, 0, 48), record(1, 1, 47), record(2, 0, 48)])
    for key, ks in (("pgd20", [0, 1, 0]), ("clean", [48, 47, 48])):
        values = [100.0 * k / 48 for k in ks]
        lo, hi = sps.t.interval(0.95, 2, loc=sum(values) / 3, scale=sps.sem(values))
        assert lo < 0 or hi > 100  # the raw interval leaves [0, 100] here
        assert out[key]["seed_interval"] == pytest.approx([max(lo, 0.0), min(hi, 100.0)], rel=1e-9)
    assert out["pgd20"]["seed_interval"][0] == 0.0 and out["clean"]["seed_interval"][1] == 100.0
