"""OTJR's maths (paper Eq. 9-13, docs/design.md section 1) against naive float64 loop implementations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.losses import jacobian_penalty, random_projections, sliced_wasserstein


# ---------------------------------------------------------------------------- naive references
def naive_sliced_wasserstein(source, target, projections):
    """Eq. 9-11 with Python loops: per slice, pair the r-th smallest source projection with the
    r-th smallest target projection; mean squared displacement; summed movement per sample."""
    B, C = len(source), len(source[0])
    K = len(projections[0])
    total = 0.0
    moves = [[0.0] * C for _ in range(B)]
    for k in range(K):
        s = [sum(source[i][c] * projections[c][k] for c in range(C)) for i in range(B)]
        t = sorted(sum(target[i][c] * projections[c][k] for c in range(C)) for i in range(B))
        for r, i in enumerate(sorted(range(B), key=lambda i: s[i])):
            d = t[r] - s[i]
            total += d * d
            for c in range(C):
                moves[i][c] += d * projections[c][k]
    directions = []
    for row in moves:
        norm = math.sqrt(sum(v * v for v in row))
        directions.append([v / norm if norm > 0 else 0.0 for v in row])
    return total / (B * K), directions


def naive_sw_differentiable(source, target, projections):
    """The same distance built from scalar torch ops (float64) so autograd gives reference gradients."""
    B, K = source.shape[0], projections.shape[1]
    total = source.new_zeros(())
    for k in range(K):
        s = [source[i] @ projections[:, k] for i in range(B)]
        t = [target[i] @ projections[:, k] for i in range(B)]
        s_order = sorted(range(B), key=lambda i: s[i].item())
        t_order = sorted(range(B), key=lambda i: t[i].item())
        for r in range(B):
            total = total + (t[t_order[r]] - s[s_order[r]]) ** 2
    return total / (B * K)


def naive_jacobian_penalty(model, inputs, directions):
    """Eq. 12 through explicit per-sample Jacobians: C * mean_i ||Delta_i^T J(x_i)||^2."""
    C = directions.shape[1]
    total = inputs.new_zeros(())
    for i in range(inputs.shape[0]):
        x_i = inputs[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda v: model(v)[0], x_i, create_graph=True)  # (C, 1, ...)
        row = directions[i] @ jac.reshape(C, -1)
        total = total + (row**2).sum()
    return C * total / inputs.shape[0]


def tiny_model(in_features: int = 12, classes: int = 5) -> nn.Module:
    """Smooth (tanh) and batch-independent, so per-sample and batched Jacobians coincide."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, 16), nn.Tanh(), nn.Linear(16, classes)).double()


# ---------------------------------------------------------------------------- sliced Wasserstein
@pytest.mark.parametrize("B,C,K", [(1, 3, 1), (5, 3, 4), (16, 10, 32), (33, 100, 8)])
def test_sliced_wasserstein_matches_naive_loops(B, C, K):
    g = torch.Generator().manual_seed(B * 1000 + C * 10 + K)
    source = torch.randn(B, C, generator=g, dtype=torch.float64)
    target = torch.randn(B, C, generator=g, dtype=torch.float64) * 2 + 0.5
    theta = random_projections(C, K, dtype=torch.float64, generator=g)
    distance, directions = sliced_wasserstein(source, target, theta)
    ref_distance, ref_directions = naive_sliced_wasserstein(source.tolist(), target.tolist(), theta.tolist())
    assert distance.item() == pytest.approx(ref_distance, rel=1e-12, abs=1e-12)
    assert torch.allclose(directions, torch.tensor(ref_directions, dtype=torch.float64), atol=1e-12)


def test_projections_are_unit_columns_on_the_sphere():
    theta = random_projections(7, 2000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert theta.shape == (7, 2000)
    assert torch.allclose(theta.norm(dim=0), torch.ones(2000, dtype=torch.float64))
    # uniform on the sphere: mean direction ~ 0, second moment ~ I/C
    assert theta.mean(1).abs().max() < 0.08
    assert torch.allclose(theta @ theta.T / 2000, torch.eye(7, dtype=torch.float64) / 7, atol=0.02)


def test_directions_are_unit_and_detached_and_zero_rows_stay_zero():
    g = torch.Generator().manual_seed(3)
    source = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    theta = random_projections(4, 9, dtype=torch.float64, generator=g)
    _, directions = sliced_wasserstein(source, source.detach() + 1.0, theta)
    assert not directions.requires_grad
    assert torch.allclose(directions.norm(dim=1), torch.ones(6, dtype=torch.float64))
    # identical distributions: no movement, zero rows, no NaN
    distance, directions = sliced_wasserstein(source, source.detach().clone(), theta)
    assert distance.item() == 0.0
    assert torch.equal(directions, torch.zeros_like(directions))


def test_sliced_wasserstein_gradients_reach_both_sets_and_match_naive():
    g = torch.Generator().manual_seed(4)
    src = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    tgt = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    theta = random_projections(5, 6, dtype=torch.float64, generator=g)
    distance, _ = sliced_wasserstein(src, tgt, theta)
    g_src, g_tgt = torch.autograd.grad(distance, (src, tgt))
    ref = naive_sw_differentiable(src, tgt, theta)
    r_src, r_tgt = torch.autograd.grad(ref, (src, tgt))
    assert g_src.abs().sum() > 0 and g_tgt.abs().sum() > 0
    assert torch.allclose(g_src, r_src, atol=1e-12) and torch.allclose(g_tgt, r_tgt, atol=1e-12)


# ---------------------------------------------------------------------------- Jacobian penalty
@pytest.mark.parametrize("B,C", [(1, 3), (4, 5), (9, 10)])
def test_jacobian_penalty_matches_explicit_jacobians(B, C):
    model = tiny_model(classes=C)
    g = torch.Generator().manual_seed(B + C)
    x = torch.rand(B, 1, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    directions = F.normalize(torch.randn(B, C, generator=g, dtype=torch.float64), dim=1)
    value = jacobian_penalty(x, model(x), directions)
    ref = naive_jacobian_penalty(model, x, directions)
    assert value.item() == pytest.approx(ref.item(), rel=1e-10)

    # the penalty trains the weights: same parameter gradients as the naive path
    params = list(model.parameters())
    grads = torch.autograd.grad(value, params, allow_unused=True)
    ref_grads = torch.autograd.grad(ref, params, allow_unused=True)
    assert sum(gr.abs().sum() for gr in grads if gr is not None) > 0
    for p, a, b in zip(params, grads, ref_grads):  # the output bias does not enter the Jacobian
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        assert torch.allclose(a, b, atol=1e-10)


def test_jacobian_penalty_with_random_directions_estimates_frobenius_norm():
    """Eq. 3: C * E_v ||v^T J||^2 = ||J||_F^2 for v uniform on the sphere (checked by Monte Carlo)."""
    model = tiny_model(classes=4)
    x = torch.rand(1, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda v: model(v)[0], x).reshape(4, -1)
    exact = float((jac**2).sum())
    g = torch.Generator().manual_seed(0)
    draws = []
    out = model(x)
    for _ in range(4000):
        v = random_projections(4, 1, dtype=torch.float64, generator=g).T
        draws.append(jacobian_penalty(x, out, v).detach().item())
    draws = torch.tensor(draws, dtype=torch.float64)
    stderr = float(draws.std() / math.sqrt(len(draws)))
    assert abs(float(draws.mean()) - exact) < 4 * stderr


def test_jacobian_penalty_requires_input_gradients():
    model = tiny_model()
    x = torch.rand(2, 1, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="require grad"):
        jacobian_penalty(x, model(x), torch.ones(2, 5, dtype=torch.float64))


# ---------------------------------------------------------------------------- the OTJR objective
def test_otjr_loss_is_ce_adv_plus_weighted_penalty_and_sw():
    """Eq. 13 assembled: CE on adversarial logits + lambda_J * P(clean) + lambda_SW * SW; no clean CE."""
    from pipeline.methods import Setup
    from pipeline.methods.otjr import OTJR, OTJRParams
    from pipeline.core.pgd import Adversary

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 5))
    x, y = torch.rand(8, 1, 3, 4), torch.randint(0, 5, (8,))
    params = OTJRParams(lambda_j=0.37, lambda_sw=5.0, num_projections=6)
    adversary = Adversary(eps=0.1, step=0.03, steps=3)
    method = OTJR(params, Setup(adversary=adversary, num_classes=5))

    torch.manual_seed(11)
    loss = method.loss(model, x, y)

    torch.manual_seed(11)  # replay the same random draws in the order Algorithm 1 uses them
    x_adv = adversary.perturb(model, x, y)
    x_req = x.clone().requires_grad_(True)
    clean, adv = model(x_req), model(x_adv)
    theta = random_projections(5, 6)
    sw, directions = sliced_wasserstein(adv, clean, theta)
    expected = F.cross_entropy(adv, y) + 0.37 * jacobian_penalty(x_req, clean, directions) + 5.0 * sw
    assert loss.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(loss.terms) == {"ce_adv", "sw", "jacobian"}
    loss.total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
