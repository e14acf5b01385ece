"""Each baseline's objective against a naive float64 computation from its definition (docs/design.md section 2)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses import random_projections
from pipeline.methods import Setup
from pipeline.core.pgd import Adversary
from test_losses_defenses import exact_frobenius, plain_sinkhorn
from test_losses_otjr import naive_jacobian_penalty, naive_sliced_wasserstein

CLASSES = 4


def model_and_batch(seed: int = 0):
    """A smooth float64 MLP without BN (so per-sample Jacobians are well defined) and a batch."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, CLASSES)).double()
    x = torch.rand(7, 1, 2, 3, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (7,))
    x_adv = (x + 0.1 * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
    return model, x, y, x_adv


def make(cls_name: str, **params):
    from pipeline.methods import METHODS

    cls = METHODS.get(cls_name)
    return cls(cls.Params(**params), Setup(adversary=Adversary(eps=0.1, step=0.03, steps=4), num_classes=CLASSES))


def naive_ce(logits, y) -> float:
    total = 0.0
    for row, label in zip(logits.tolist(), y.tolist()):
        total += math.log(sum(math.exp(v) for v in row)) - row[label]
    return total / len(logits)


def naive_softmax(row):
    z = sum(math.exp(v) for v in row)
    return [math.exp(v) / z for v in row]


def naive_kl(clean, adv) -> float:
    """mean_i sum_c p_ic log(p_ic / q_ic), p = softmax(clean) the reference, q = softmax(adv)."""
    total = 0.0
    for c_row, a_row in zip(clean.tolist(), adv.tolist()):
        p, q = naive_softmax(c_row), naive_softmax(a_row)
        total += sum(pc * math.log(pc / qc) for pc, qc in zip(p, q))
    return total / len(clean)


def naive_sq_distance(a, b) -> float:
    return sum(sum((u - v) ** 2 for u, v in zip(ra, rb)) for ra, rb in zip(a.tolist(), b.tolist())) / len(a)


# ---------------------------------------------------------------------------- TRADES
def test_trades_objective_kl_direction():
    model, x, y, x_adv = model_and_batch()
    loss = make("trades", beta=6.0).objective(model, x, x_adv, y)
    clean, adv = model(x), model(x_adv)
    expected = naive_ce(clean, y) + 6.0 * naive_kl(clean, adv)
    reversed_kl = naive_ce(clean, y) + 6.0 * naive_kl(adv, clean)
    assert loss.total.item() == pytest.approx(expected, rel=1e-12)
    assert abs(expected - reversed_kl) > 1e-6  # the direction is actually tested
    assert set(loss.terms) == {"ce", "kl"}


def test_trades_attack_maximises_the_kl_with_clean_logits_computed_once():
    model, x, y, _ = model_and_batch()
    calls = []
    model.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].detach().clone()))
    method = make("trades", beta=6.0)
    torch.manual_seed(0)
    x_adv = method.adversarial(model, x, y)
    assert len(calls) == 1 + method.setup.adversary.steps  # one clean pass, then one per attack step
    assert torch.equal(calls[0], x)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-12 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        clean = model(x)
        start_kl = naive_kl(clean, model(calls[1]))  # the uniform random start
        assert naive_kl(clean, model(x_adv)) > start_kl  # ascended the KL, not the CE
    assert not x_adv.requires_grad
    torch.manual_seed(0)  # same random start, CE objective: a different point
    assert not torch.equal(method.setup.adversary.perturb(model, x, y), x_adv)


# ---------------------------------------------------------------------------- ALP
def test_alp_objective_pairs_clean_and_adversarial_logits():
    model, x, y, x_adv = model_and_batch(1)
    loss = make("alp", alpha=0.3, lambda_pair=0.7).objective(model, x, x_adv, y)
    clean, adv = model(x), model(x_adv)
    expected = 0.3 * naive_ce(clean, y) + 0.7 * naive_ce(adv, y) + 0.7 * naive_sq_distance(adv, clean)
    assert loss.total.item() == pytest.approx(expected, rel=1e-12)
    assert loss.terms["pair"].item() == pytest.approx(naive_sq_distance(adv, clean), rel=1e-12)


# ---------------------------------------------------------------------------- SAT and SAT + JR
def naive_sinkhorn_divergence(a, b, eps, iterations) -> float:
    return (plain_sinkhorn(a, b, eps, iterations)[0]
            - 0.5 * plain_sinkhorn(a, a, eps, iterations)[0] - 0.5 * plain_sinkhorn(b, b, eps, iterations)[0])


def test_sat_objective():
    model, x, y, x_adv = model_and_batch(2)
    loss = make("sat", lambda_ot=2.5, entropic_eps=1.0, iterations=30).objective(model, x, x_adv, y)
    with torch.no_grad():
        clean, adv = model(x), model(x_adv)
    expected = naive_ce(adv, y) + 2.5 * naive_sinkhorn_divergence(adv, clean, 1.0, 30)
    assert loss.total.item() == pytest.approx(expected, rel=1e-10)


def test_sat_jr_adds_the_jacobian_penalty_at_the_clean_input():
    model, x, y, x_adv = model_and_batch(3)
    loss = make("sat_jr", lambda_ot=1.0, entropic_eps=1.0, iterations=20, lambda_j=0.3, n_proj=-1).objective(
        model, x, x_adv, y)
    with torch.no_grad():
        clean, adv = model(x), model(x_adv)
    expected = (naive_ce(adv, y) + naive_sinkhorn_divergence(adv, clean, 1.0, 20)
                + 0.3 * exact_frobenius(model, x))
    assert loss.total.item() == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------------------- Jacobian regularisers
def test_rand_jr_objective_uses_clean_inputs_only():
    model, x, y, _ = model_and_batch(4)
    method = make("rand_jr", lambda_j=0.5, n_proj=-1)
    assert method.adversarial(model, x, y) is None
    loss = method.objective(model, x, None, y)
    assert loss.total.item() == pytest.approx(naive_ce(model(x), y) + 0.5 * exact_frobenius(model, x), rel=1e-12)


def test_opt_jr_uses_sw_directions_from_pgd_to_clean_logits():
    model, x, y, _ = model_and_batch(5)
    method = make("opt_jr", lambda_j=0.4, num_projections=6)
    torch.manual_seed(3)
    loss = method.loss(model, x, y)

    torch.manual_seed(3)  # replay: the CE-PGD attack, then the projections
    x_adv = method.setup.adversary.perturb(model, x, y)
    theta = random_projections(CLASSES, 6, dtype=torch.float64)
    with torch.no_grad():
        clean, adv = model(x), model(x_adv)
    _, directions = naive_sliced_wasserstein(adv.tolist(), clean.tolist(), theta.tolist())
    directions = torch.tensor(directions, dtype=torch.float64)
    penalty = naive_jacobian_penalty(model, x.clone().requires_grad_(True), directions).item()
    assert loss.total.item() == pytest.approx(naive_ce(clean, y) + 0.4 * penalty, rel=1e-10)
    assert set(loss.terms) == {"ce", "jacobian"}


def test_sw_objective():
    model, x, y, x_adv = model_and_batch(6)
    method = make("sw", lambda_sw=64.0, num_projections=5)
    torch.manual_seed(8)
    loss = method.objective(model, x, x_adv, y)
    torch.manual_seed(8)
    theta = random_projections(CLASSES, 5, dtype=torch.float64)
    with torch.no_grad():
        clean, adv = model(x), model(x_adv)
    sw, _ = naive_sliced_wasserstein(adv.tolist(), clean.tolist(), theta.tolist())
    assert loss.total.item() == pytest.approx(naive_ce(adv, y) + 64.0 * sw, rel=1e-10)


def test_pgd_at_and_xe_objectives():
    model, x, y, x_adv = model_and_batch(7)
    assert make("pgd_at").objective(model, x, x_adv, y).total.item() == pytest.approx(naive_ce(model(x_adv), y))
    assert make("xe").objective(model, x, None, y).total.item() == pytest.approx(naive_ce(model(x), y))


# ---------------------------------------------------------------------------- guides (LBGAT's hook)
@pytest.mark.parametrize("name, params", [("trades", {"beta": 2.0}),
                                          ("otjr", {"lambda_j": 0.0, "lambda_sw": 0.0, "num_projections": 3})])
def test_a_guide_replaces_the_supervised_term_only(name, params):
    model, x, y, x_adv = model_and_batch(8)
    method = make(name, **params)
    seen = []

    def guide(adv_logits):
        seen.append(adv_logits.detach())
        return adv_logits.sum() * 0 + 1.25

    plain = method.objective(model, x, x_adv, y)
    guided = method.objective(model, x, x_adv, y, guide)
    supervised = naive_ce(model(x), y) if name == "trades" else naive_ce(model(x_adv), y)
    assert guided.total.item() == pytest.approx(plain.total.item() - supervised + 1.25, rel=1e-10)
    assert torch.allclose(seen[0], model(x_adv))
    assert "guide" in guided.terms


def test_sat_epochs_override_lengthens_only_sat(digits):
    """SAT's own `epochs` (the paper's SAT_400) sets its run length and scales the LR milestones."""
    from conftest import write_params
    from pipeline.methods import parse_run
    from pipeline.models import checkpoint_info
    from pipeline.config import load_params
    from pipeline.train.loop import fit
    from pipeline.train.schedule import lr_at

    write_params(digits, {"train.epochs": 1, "train.eval_n": 0, "model.args.width": 4, "sat.epochs": 3})
    p = load_params()
    assert p.for_method("sat").epochs == 3
    sat = checkpoint_info(fit("digits", parse_run("sat"), p, show_progress=False))
    pgd = checkpoint_info(fit("digits", parse_run("pgd_at"), p, show_progress=False))
    assert sat["final"]["epoch"] == 3 and pgd["final"]["epoch"] == 1
    assert sat["settings"]["method"]["sat"]["epochs"] == 3
    # milestones at 75% / 90% of the run's own length: 300 and 360 of 400
    assert [lr_at(p.train, e, 400) for e in (299, 300, 359, 360)] == pytest.approx(
        [p.train.lr, p.train.lr * 0.1, p.train.lr * 0.1, p.train.lr * 0.01])
