"""Debiased Sinkhorn divergence between two point clouds (SAT, Bouniot et al. 2021).

Uniform weights, squared Euclidean cost, a fixed entropic regularisation eps and a fixed
number of log-domain Sinkhorn iterations (stable for small eps). Gradients flow through
the unrolled iterations into both clouds.
"""

from __future__ import annotations

import math

import torch


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(..., n, m) matrix of ||x_i - y_j||^2, differentiable everywhere (unlike cdist at zero distance)."""
    return (x.unsqueeze(-2) - y.unsqueeze(-3)).pow(2).sum(-1)


def entropic_ot(x: torch.Tensor, y: torch.Tensor, eps: float, iterations: int) -> torch.Tensor:
    """OT_eps(x, y): the dual value <a, f> + <b, g> after `iterations` Sinkhorn updates.

    With uniform weights a, b, the potentials solve
    min_pi <pi, C> + eps * KL(pi || a x b) over couplings of a and b, C_ij = ||x_i - y_j||^2;
    each iteration updates f then g by the soft-min (log-sum-exp) c-transforms. Leading
    dimensions of x (..., n, d) and y (..., m, d) are independent problems, solved together.
    """
    if iterations < 1:
        raise ValueError("entropic_ot: iterations must be >= 1")
    cost = squared_distances(x, y)
    n, m = cost.shape[-2:]
    log_a, log_b = -math.log(n), -math.log(m)
    g = cost.new_zeros(*cost.shape[:-2], 1, m)
    for _ in range(iterations):
        f = -eps * torch.logsumexp(log_b + (g - cost) / eps, dim=-1, keepdim=True)  # (..., n, 1)
        g = -eps * torch.logsumexp(log_a + (f - cost) / eps, dim=-2, keepdim=True)  # (..., 1, m)
    return f.mean((-2, -1)) + g.mean((-2, -1))


def sinkhorn_divergence(x: torch.Tensor, y: torch.Tensor, eps: float, iterations: int) -> torch.Tensor:
    """S_eps(x, y) = OT_eps(x, y) - (OT_eps(x, x) + OT_eps(y, y)) / 2 (Feydy et al. 2019's debiasing).

    Zero for identical clouds, and the exact squared-Euclidean OT cost (W_2^2) as eps -> 0.
    Equal-sized clouds (SAT's case) solve the three problems as one batch.
    """
    if x.shape == y.shape:
        xy, xx, yy = entropic_ot(torch.stack((x, x, y)), torch.stack((y, x, y)), eps, iterations).unbind()
    else:
        xy, xx, yy = (entropic_ot(a, b, eps, iterations) for a, b in ((x, y), (x, x), (y, y)))
    return xy - 0.5 * (xx + yy)
