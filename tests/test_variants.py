"""params.yaml `variants`: a method under a name of its own with some settings changed (the tuned OTJR row)."""

from __future__ import annotations

import pytest
import torch
from ruamel.yaml import YAML
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from conftest import TINY, write_params
from fake_results import build_claims_world
from pipeline.config import load_params
from pipeline.core.errors import UserError
from pipeline.methods import parse_run
from pipeline.report import evidence

TUNED = {"otjr_tuned": {"method": "otjr", "lambda_j": 0.01}}


def test_a_variant_takes_its_methods_settings_with_its_own_changes(tmp_path):
    write_params(tmp_path, {"variants": TUNED, "runs": ["xe", "otjr", "otjr_tuned"], "lambda_sw": 32})
    p = load_params(tmp_path / "params.yaml")
    tuned = p.for_run(parse_run("otjr_tuned", variants={"otjr_tuned": "otjr"}))
    plain = p.for_run(parse_run("otjr"))
    assert (tuned.lambda_j, tuned.lambda_sw) == (pytest.approx(0.01), 32)  # lambda_sw: the method's, as set
    assert plain.lambda_j == pytest.approx(0.002) and tuned.num_projections == plain.num_projections


@pytest.mark.parametrize("variants, fragment", [
    ({"otjr": {"method": "otjr", "lambda_j": 0.01}}, "'variants.otjr': a method or add-on is already called"),
    ({"otjr-x": {"method": "otjr"}}, "run name 'otjr-x' must be lower case letters, digits and underscores"),
    ({"tuned": {"lambda_j": 0.01}}, "'variants.tuned': missing key 'method'"),
    ({"tuned": {"method": "otjrr"}}, "'variants.tuned.method': unknown method 'otjrr'"),
    ({"tuned": {"method": "otjr", "beta": 6.0}}, "variants.tuned.beta"),
    ({"tuned": {"method": "otjr", "lambda_j": "high"}}, "variants.tuned.lambda_j"),
])
def test_a_bad_variant_is_one_line_naming_its_key(tmp_path, variants, fragment):
    runs = ["xe", *[n for n in variants if n != "otjr"]]
    write_params(tmp_path, {"variants": variants, "runs": runs})
    with pytest.raises(UserError) as err:
        load_params(tmp_path / "params.yaml")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_the_variants_train_stage_reads_its_entry_not_the_keys_it_changes(tmp_path):
    from pipeline import dvc_render

    write_params(tmp_path, {"variants": TUNED, "runs": ["xe", "otjr", "otjr_tuned"]})
    stages = dvc_render.stages(tmp_path)
    tuned = stages["train-otjr_tuned"]["do"]
    assert "variants.otjr_tuned" in tuned["params"] and "lambda_j" not in tuned["params"]
    assert {"lambda_sw", "num_projections"} <= set(tuned["params"])  # still the method's
    assert "metrics/code/train-otjr.md5" in tuned["deps"]  # OTJR's code
    assert tuned["cmd"].endswith("--method otjr_tuned")
    assert "lambda_j" in stages["train-otjr"]["do"]["params"]
    with pytest.raises(UserError, match="unknown run 'otjr_untuned'"):
        write_params(tmp_path, {"variants": TUNED, "runs": ["otjr_untuned"]})
        dvc_render.stages(tmp_path)


def test_a_variant_trains_exactly_as_its_method_with_those_settings(digits):
    from pipeline import api
    from pipeline.core.io import load_tensors

    tiny = {**TINY, "train.epochs": 1, "train.eval_n": 16, "model.args.width": 4}
    write_params(digits, {**tiny, "variants": TUNED, "runs": ["otjr", "otjr_tuned"]})
    tuned_path = api.train("digits", "otjr_tuned")
    tuned, tuned_meta = load_tensors(tuned_path)
    write_params(digits, {**tiny, "lambda_j": 0.01, "runs": ["otjr"]})
    plain, plain_meta = load_tensors(api.train("digits", "otjr", resume=False))
    assert tuned.keys() == plain.keys() and all(torch.equal(tuned[k], plain[k]) for k in tuned)
    assert tuned_meta["run"] == "otjr_tuned" and tuned_meta["method"] == "otjr"
    assert tuned_meta["settings"]["method"] == plain_meta["settings"]["method"]  # lambda_j 0.01 recorded
    assert tuned_meta["settings"]["method"]["lambda_j"] == pytest.approx(0.01)


def test_a_variant_gets_its_methods_paired_claims_corrected_with_all_the_others(project):
    flags = build_claims_world("fashion_mnist")
    g = torch.Generator().manual_seed(3)
    flags["otjr_tuned"] = {k: v ^ (torch.rand(len(v), generator=g) < 0.1) for k, v in flags["otjr"].items()}
    per_seed = {r: [{k: v.tolist() for k, v in f.items()}] for r, f in flags.items()}
    claims = evidence.with_variants({"otjr_tuned": "otjr"})
    results = evidence.evaluate_claims(per_seed, {}, None, ["fgsm", "pgd20"], claims=claims)
    added = [r for r in results if r.claim.a == "otjr_tuned"]
    assert [r.claim.statement for r in added] == [f"otjr_tuned above {b} under AutoAttack"
                                                  for b in ("trades", "pgd_at", "alp", "sat")]
    tested = [r for r in results if r.comparison is not None]
    refs = []
    for r in tested:
        def measure(run):
            f = flags[run]
            return (f["clean"] & f["pgd20"] & f["fgsm"]) if r.claim.measure == evidence.WHITE_BOX \
                else f[r.claim.measure]
        a, b = measure(r.claim.a), measure(r.claim.b)
        only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
        refs.append(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0)
    assert sum(r.claim.a == "otjr_tuned" for r in tested) == 3  # sat has no flags: not run
    holm = multipletests(refs, method="holm")[1]
    for r, p, p_holm in zip(tested, refs, holm):
        assert r.comparison.p_value == pytest.approx(p, rel=1e-9) and r.p_holm == pytest.approx(p_holm, rel=1e-9)


def test_the_render_of_a_project_with_a_variant_is_valid_yaml_for_dvc(tmp_path):
    from pipeline import dvc_render

    write_params(tmp_path, {"variants": TUNED, "runs": ["xe", "otjr_tuned"]})
    text = dvc_render.render(tmp_path)
    stages = YAML(typ="safe", pure=True).load(text)["stages"]
    assert "train-otjr_tuned" in stages and "train-otjr" not in stages
