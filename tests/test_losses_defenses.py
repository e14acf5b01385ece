"""The baselines' losses against independent references: POT's exact OT and sliced Wasserstein,
a plain Sinkhorn loop, and explicit Jacobians (float64)."""

from __future__ import annotations

import math

import ot
import pytest
import torch
from torch import nn

from pipeline.losses import (
    entropic_ot,
    random_jacobian_penalty,
    random_projections,
    sinkhorn_divergence,
    sliced_wasserstein,
)


def clouds(n: int, m: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(m, d, generator=g, dtype=torch.float64) * 1.5 + 0.5)


def naive_cost(x, y):
    return [[sum((xi[k] - yj[k]) ** 2 for k in range(len(xi))) for yj in y] for xi in x]


def plain_sinkhorn(x, y, eps: float, iterations: int):
    """Cuturi's scaling iterations u = a / Kv, v = b / K^T u with K = exp(-C / eps), in loops, from v = b.

    Returns the dual value <a, f> + <b, g> of the potentials f = eps log(u / a), g = eps log(v / b),
    and the primal value <pi, C> + eps * KL(pi || a x b) of the plan pi = diag(u) K diag(v).
    """
    x, y = x.tolist(), y.tolist()
    C = naive_cost(x, y)
    n, m = len(x), len(y)
    K = [[math.exp(-C[i][j] / eps) for j in range(m)] for i in range(n)]
    u, v = [1.0] * n, [1.0 / m] * m
    for _ in range(iterations):
        u = [(1 / n) / sum(K[i][j] * v[j] for j in range(m)) for i in range(n)]
        v = [(1 / m) / sum(K[i][j] * u[i] for i in range(n)) for j in range(m)]
    dual = eps * (sum(math.log(ui * n) for ui in u) / n + sum(math.log(vj * m) for vj in v) / m)
    primal = 0.0
    for i in range(n):
        for j in range(m):
            p = u[i] * K[i][j] * v[j]
            primal += p * C[i][j] + eps * p * math.log(p * n * m)
    return dual, primal


# ---------------------------------------------------------------------------- Sinkhorn divergence
@pytest.mark.parametrize("iterations", [1, 7, 50])
def test_entropic_ot_follows_plain_sinkhorn_iterates(iterations):
    x, y = clouds(5, 7, 3, seed=iterations)
    dual, _ = plain_sinkhorn(x, y, eps=1.0, iterations=iterations)
    assert entropic_ot(x, y, 1.0, iterations).item() == pytest.approx(dual, rel=1e-12)


def test_entropic_ot_converges_to_the_regularised_primal_optimum_at_eps_1():
    x, y = clouds(6, 4, 3, seed=1)
    _, primal = plain_sinkhorn(x, y, eps=1.0, iterations=2000)
    assert entropic_ot(x, y, 1.0, 500).item() == pytest.approx(primal, rel=1e-10)


@pytest.mark.parametrize("n,m", [(6, 6), (5, 7)])  # equal sizes take the batched path
def test_sinkhorn_divergence_is_the_debiased_combination(n, m):
    x, y = clouds(n, m, 4, seed=2)
    value = sinkhorn_divergence(x, y, 1.0, 50).item()
    expected = (plain_sinkhorn(x, y, 1.0, 50)[0]
                - 0.5 * plain_sinkhorn(x, x, 1.0, 50)[0] - 0.5 * plain_sinkhorn(y, y, 1.0, 50)[0])
    assert value == pytest.approx(expected, rel=1e-12)
    assert sinkhorn_divergence(x, x.clone(), 1.0, 50).item() == pytest.approx(0.0, abs=1e-12)


def test_sinkhorn_divergence_tends_to_exact_ot_as_eps_vanishes():
    """S_eps -> W_2^2 (POT's network simplex on the squared Euclidean cost) as eps -> 0."""
    x, y = clouds(6, 6, 3, seed=0)
    exact = ot.emd2(torch.full((6,), 1 / 6, dtype=torch.float64), torch.full((6,), 1 / 6, dtype=torch.float64),
                    torch.tensor(naive_cost(x.tolist(), y.tolist()), dtype=torch.float64)).item()
    errors = [abs(sinkhorn_divergence(x, y, eps, 5000).item() - exact) for eps in (0.3, 0.03, 0.003)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3 * exact
    assert abs(sinkhorn_divergence(x, y, 1.0, 50).item() - exact) > 0.05 * exact  # eps = 1 is not exact OT


def test_sinkhorn_divergence_gradients_are_finite_and_reach_both_clouds():
    x, y = clouds(8, 8, 10, seed=3)
    x.requires_grad_(True)
    y.requires_grad_(True)
    gx, gy = torch.autograd.grad(sinkhorn_divergence(x, y, 1.0, 50), (x, y))
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
    assert gx.abs().sum() > 0 and gy.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda a, b: sinkhorn_divergence(a, b, 1.0, 5), (x[:4], y[:3]))


# ---------------------------------------------------------------------------- sliced Wasserstein vs POT
@pytest.mark.parametrize("B,C,K", [(4, 3, 1), (16, 10, 32), (25, 7, 5)])
def test_sliced_wasserstein_matches_pot_with_the_same_projections(B, C, K):
    """POT returns (mean_k W_2^2 of slice k)^(1/2); ours is the mean itself (docs/design.md section 1)."""
    source, target = clouds(B, B, C, seed=B + K)
    theta = random_projections(C, K, dtype=torch.float64, generator=torch.Generator().manual_seed(K))
    ours, _ = sliced_wasserstein(source, target, theta)
    pot = ot.sliced_wasserstein_distance(source.numpy(), target.numpy(), projections=theta.numpy(), p=2)
    assert ours.item() == pytest.approx(float(pot) ** 2, rel=1e-12)


# ---------------------------------------------------------------------------- random Jacobian penalty
def tiny_model(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, classes)).double()


def exact_frobenius(model: nn.Module, x: torch.Tensor) -> float:
    """mean_i ||J(x_i)||_F^2 from torch.autograd.functional.jacobian, one sample at a time."""
    total = 0.0
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: model(v)[0], x[i : i + 1])
        total += float(jac.pow(2).sum())
    return total / len(x)


def test_exact_penalty_equals_the_frobenius_norm():
    model = tiny_model()
    x = torch.rand(3, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    value = random_jacobian_penalty(x, model(x), n_proj=-1)
    assert value.item() == pytest.approx(exact_frobenius(model, x.detach()), rel=1e-12)
    assert value.requires_grad  # it trains the weights


@pytest.mark.parametrize("n_proj", [1, 3])
def test_random_penalty_is_unbiased(n_proj):
    model = tiny_model()
    x = torch.rand(2, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    out = model(x)
    g = torch.Generator().manual_seed(n_proj)
    draws = torch.tensor([random_jacobian_penalty(x, out, n_proj, generator=g).item() for _ in range(3000)])
    exact = exact_frobenius(model, x.detach())
    stderr = float(draws.std() / math.sqrt(len(draws)))
    assert abs(float(draws.mean()) - exact) < 4 * stderr
    assert float(draws.std()) > 0  # a random estimate, not the exact value in disguise


def test_more_projections_reduce_the_variance():
    model = tiny_model()
    x = torch.rand(2, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    out = model(x)
    g = torch.Generator().manual_seed(0)
    spread = {k: torch.tensor([random_jacobian_penalty(x, out, k, generator=g).item() for _ in range(400)]).var()
              for k in (1, 8)}
    assert spread[8] < spread[1] / 3


@pytest.mark.parametrize("n_proj", [0, -2])
def test_invalid_projection_counts_are_rejected(n_proj):
    model = tiny_model()
    x = torch.rand(2, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="n_proj"):
        random_jacobian_penalty(x, model(x), n_proj)
