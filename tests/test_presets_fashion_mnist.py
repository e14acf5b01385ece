"""The Fashion-MNIST tiers: each preset resolves to a valid params.yaml at Fashion-MNIST's L-inf budget
eps = 0.1, with the paper's hyper-parameters as the primary rows (docs/results/fashion-mnist-tiers.md)."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from pipeline import presets
from pipeline.config import load_params
from pipeline.methods import parse_run

TIER_METHODS = ["xe", "pgd_at", "trades", "alp", "sat", "rand_jr", "opt_jr", "sw", "sat_jr", "otjr"]  # all ten
TUNED = "otjr_tuned"  # OTJR at the setting the sweep picked on the validation split
SWEEP = REPO / "docs" / "results" / "fashion-mnist-sweep.json"


def _params(tmp_path, name):
    return load_params(presets.apply(name, tmp_path / "params.yaml"))


def _check_budget_and_paper_values(p):
    assert p.datasets == ("fashion_mnist",)
    assert p.adversary.eps == pytest.approx(0.1)
    for name, block in p.attack.settings.items():
        if getattr(block, "norm", None) == "linf":
            assert block.eps == pytest.approx(0.1), name
    pgd20 = p.attack.settings["pgd20"]
    assert (pgd20.step, pgd20.steps) == (pytest.approx(0.025), 20)  # eps/4, as 2/255 for 8/255
    otjr = p.for_method("otjr")
    assert (otjr.lambda_j, otjr.lambda_sw, otjr.num_projections) == (pytest.approx(0.002), 64, 32)
    assert p.for_method("trades").beta == 6
    assert p.for_method("rand_jr").lambda_j == pytest.approx(0.02) and p.for_method("opt_jr").lambda_j == pytest.approx(0.02)
    assert 0 in p.sanity.eps_sweep and max(p.sanity.eps_sweep) >= 0.5  # reaches chance well past eps


def test_cpu_tier_validates_and_holds_its_calibrated_settings(tmp_path):
    p = _params(tmp_path, "fashion-mnist")
    _check_budget_and_paper_values(p)
    assert p.runs == (*TIER_METHODS, TUNED)
    assert p.data.train_n == {"fashion_mnist": 20000}
    assert p.model.name == "strided_cnn" and p.train.epochs == 8
    assert (p.adversary.steps, p.adversary.step) == (5, pytest.approx(0.04))
    assert p.all_seeds == (0, 1, 2)
    assert (p.attack.n, p.attack.n_of("pgd20"), p.attack.n_of("autoattack")) == (10000, 10000, 1000)
    assert {p.attack.n_of(a) for a in p.attack.suite if a != "pgd20"} == {1000}  # the worst case on 1,000 too
    assert presets.describe("fashion-mnist")


def test_tuned_row_trains_with_what_the_published_sweep_picked_on_validation(tmp_path):
    picked = json.loads(SWEEP.read_text())["picked"]["fashion_mnist/val"]
    assert picked["split"] == "val"
    p = _params(tmp_path, "fashion-mnist")
    assert p.variants[TUNED]["method"] == "otjr"
    tuned = p.for_run(parse_run(TUNED, variants={TUNED: "otjr"}))
    for key in ("lambda_j", "lambda_sw", "num_projections"):
        assert getattr(tuned, key) == pytest.approx(picked[key]), key
        assert key in p.variants[TUNED]  # pinned: a later top-level edit does not move the tuned row


def test_full_tier_validates_with_five_seeds(tmp_path):
    p = _params(tmp_path, "fashion-mnist-full")
    _check_budget_and_paper_values(p)
    assert p.all_seeds == (0, 1, 2, 3, 4)
    assert p.data.train_n == {} and p.train.epochs == 100 and p.model.name == "preact_resnet18"
    assert (p.adversary.steps, p.adversary.step) == (10, pytest.approx(0.025)) and len(p.runs) == 10


def test_sweep_preset_is_the_tier_on_its_validation_split(tmp_path):
    (tmp_path / "s").mkdir(), (tmp_path / "t").mkdir()
    sweep, tier = _params(tmp_path / "s", "fashion-mnist-sweep"), _params(tmp_path / "t", "fashion-mnist")
    _check_budget_and_paper_values(sweep)  # the baseline holds the paper's values; experiments move one
    assert sweep.eval_split == "val" and tier.eval_split == "test"
    assert sweep.runs == ("xe", "otjr") and sweep.all_seeds == (0,)
    assert (sweep.data, sweep.model, sweep.train, sweep.adversary) == (tier.data, tier.model, tier.train,
                                                                       tier.adversary)  # the tier's models
    val_images = round(sweep.data.val_fraction * 6000) * 10  # held out per class of Fashion-MNIST's 60,000
    assert sweep.attack.n == val_images == 3000  # clean and PGD-20 on the whole validation split
    assert set(sweep.attack.suite) == {"pgd20", "pgd100", "autoattack"}
    assert sweep.attack.n_of("autoattack") == sweep.attack.n_of("pgd100") == 1000
