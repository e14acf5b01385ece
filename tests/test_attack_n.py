"""Per-attack n: an attack may see only the first part of the evaluated test images.

Checked against the straightforward alternative (running the attack alone on those images)
and against the worst case computed by hand from the per-example flags.
"""

from __future__ import annotations

import pytest
import torch

from conftest import REPO, write_params
from pipeline.attacks import build, evaluate, summarise
from pipeline.core.errors import UserError
from pipeline.config import load_params
from pipeline.sanity.rules import comparable_entries
from trained_models import digits, trained

N = 40


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def suite(params, *names):
    return [build(params.attack, n, 10, params.seed) for n in names]


def test_params_take_an_attack_block_n(tmp_path):
    write_params(tmp_path, {"attack.n": 40, "attack.pgd20.n": 16})
    p = load_params(tmp_path / "params.yaml")
    assert p.attack.n_of("pgd20") == 16 and p.attack.n_of("fgsm") == 40
    assert "n" not in p.attack.settings["pgd20"].model_dump()  # data, never an attack's setting


@pytest.mark.parametrize("bad", [0, 41, 2.5, "ten", True])
def test_bad_attack_n_is_one_line_naming_the_key(tmp_path, bad):
    write_params(tmp_path, {"attack.n": 40, "attack.autoattack.n": bad})
    with pytest.raises(UserError, match=r"'attack\.autoattack\.n': expected a whole number .* 1 to attack\.n \(40\)"):
        load_params(tmp_path / "params.yaml")


def test_attack_with_its_own_n_equals_running_it_alone_on_those_images(params):
    model = trained("pgd_at")
    d = digits()
    x, y = d.x_test[:N], d.y_test[:N]
    both = evaluate(model, x, y, suite(params, "fgsm", "pgd20"), 64, params.seed, n_of={"pgd20": 16})
    alone = evaluate(model, x[:16], y[:16], suite(params, "pgd20"), 64, params.seed)
    assert len(both.outcomes["fgsm"].robust) == N
    assert torch.equal(both.outcomes["pgd20"].robust, alone.outcomes["pgd20"].robust)
    # The worst case: robust to every attack, on the images every attack saw.
    naive = [bool(both.clean[i]) and all(bool(o.robust[i]) for o in both.outcomes.values()) for i in range(16)]
    assert both.worst_case().tolist() == naive


def test_record_states_each_attacks_n_and_where_the_worst_case_is_taken(params):
    model = trained("pgd_at")
    d = digits()
    attacks = suite(params, "fgsm", "pgd20")
    record = summarise(evaluate(model, d.x_test[:N], d.y_test[:N], attacks, 64, params.seed, n_of={"pgd20": 16}),
                       attacks)
    assert (record["clean"]["n"], record["fgsm"]["n"], record["pgd20"]["n"]) == (N, N, 16)
    assert record["pgd20"]["accuracy"] == pytest.approx(100.0 * record["pgd20"]["n_correct"] / 16)
    worst = record["worst_case"]
    assert worst["n"] == 16 and worst["attacks"] == ["fgsm", "pgd20"] and "first 16" in worst["images"]


def test_sanity_compares_attacks_on_the_images_both_saw():
    flags = {"clean": torch.tensor([1, 1, 1, 1, 0, 1], dtype=torch.bool),
             "fgsm": torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool),
             "pgd20": torch.tensor([0, 0, 1], dtype=torch.bool)}
    record = {"n": 6, "fgsm": {"accuracy": 400 / 6, "n_correct": 4, "n": 6, "validity": {}},
              "pgd20": {"accuracy": 100 / 3, "n_correct": 1, "n": 3, "validity": {}}}
    entries = comparable_entries(record, flags)
    assert (entries["fgsm"]["n"], entries["fgsm"]["n_correct"]) == (3, 2)  # first 3: 1, 0, 1
    assert entries["fgsm"]["accuracy"] == pytest.approx(200 / 3)
    assert entries["pgd20"]["accuracy"] == pytest.approx(100 / 3)
    same = {"n": 6, "fgsm": {"accuracy": 50.0, "n_correct": 3, "validity": {}}}
    assert comparable_entries(same, {})["fgsm"]["accuracy"] == 50.0  # one n: as recorded


def test_white_box_worst_case_of_the_claims_uses_the_images_every_attack_saw():
    from pipeline.report import evidence

    flags = {"clean": [True, True, True, False], "pgd20": [True, False, True, False], "mim": [True, True]}
    assert evidence.measure_flags(flags, evidence.WHITE_BOX, ["pgd20", "mim"]) == [True, False]


def test_attack_and_sanity_stages_honour_an_attacks_own_n(digits):
    from pipeline import api
    from pipeline.core import paths
    from pipeline.core.io import load_tensors, read_json
    from pipeline.report.sizes import evaluated_on

    write_params(digits, {"attack.n": 40, "attack.suite": ["fgsm", "pgd20"], "attack.pgd20.n": 12,
                          "train.epochs": 1, "train.eval_n": 16, "model.args.width": 8})
    api.train("digits", "xe")
    record = read_json(api.attack("digits", "xe"))
    assert (record["n"], record["fgsm"]["n"], record["pgd20"]["n"], record["worst_case"]["n"]) == (40, 40, 12, 12)
    flags, meta = load_tensors(paths.attack_flags("digits", "xe"))
    assert (len(flags["pgd20"]), len(flags["worst_case"]), meta["worst_case_n"]) == (12, 12, 12)
    path, _ = api.sanity("digits", "xe")
    rule3 = next(r for r in read_json(path)["rules"] if r["id"] == 3)
    assert rule3["verdict"] in ("pass", "fail") and rule3["figures"]["fgsm"] == pytest.approx(
        100.0 * int(flags["fgsm"][:12].sum()) / 12)  # FGSM restated on PGD-20's 12 images
    assert "pgd20 n = 12" in evaluated_on(record) and "first 12 images" in evaluated_on(record)
