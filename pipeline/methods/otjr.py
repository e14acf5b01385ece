"""OTJR (paper Eq. 13, Algorithm 1): PGD-AT + sliced Wasserstein pull + optimal Jacobian penalty."""

from __future__ import annotations

import torch.nn.functional as F

from ..core.schema import NonNegativeReal, PositiveInt, Strict
from ..losses import jacobian_penalty, random_projections, sliced_wasserstein
from .base import Loss, Method, register


class OTJRParams(Strict):
    lambda_j: NonNegativeReal
    lambda_sw: NonNegativeReal
    num_projections: PositiveInt


@register
class OTJR(Method):
    name = "otjr"
    Params = OTJRParams
    param_block = None  # lambda_j, lambda_sw, num_projections are top-level keys
    summary = "CE(f(x_adv), y) + lambda_J * optimal Jacobian penalty + lambda_SW * SW(adv, clean) - paper Eq. 13"
    addons = frozenset({"awp", "lbgat"})

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        p = self.params
        x_clean = x.detach().clone().requires_grad_(True)
        clean = model(x_clean)
        adv = model(x_adv)
        theta = random_projections(clean.shape[1], p.num_projections, device=x.device, dtype=clean.dtype)
        sw, directions = sliced_wasserstein(adv, clean, theta)
        jac = jacobian_penalty(x_clean, clean, directions)
        supervised = F.cross_entropy(adv, y) if guide is None else guide(adv)
        total = supervised + p.lambda_j * jac + p.lambda_sw * sw
        first = "ce_adv" if guide is None else "guide"
        return Loss(total, {first: supervised.detach(), "sw": sw.detach(), "jacobian": jac.detach()})
