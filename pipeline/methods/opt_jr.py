"""Optimal JR (paper Eq. 14 with Eq. 12, Table 7): CE(f(x), y) + lambda_J * optimal Jacobian penalty.

The directions come from the sliced Wasserstein movement of the PGD adversarial logits
towards the clean logits (Eq. 10-11); the adversarial logits serve only that purpose, so
they are computed without a graph (model in train mode, as for the clean logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.schema import NonNegativeReal, PositiveInt, Strict
from ..losses import jacobian_penalty, random_projections, sliced_wasserstein
from .base import Loss, Method, register


class OptJRParams(Strict):
    lambda_j: NonNegativeReal
    num_projections: PositiveInt


@register
class OptJR(Method):
    name = "opt_jr"
    Params = OptJRParams
    param_block = "opt_jr"
    summary = "CE(f(x), y) + lambda_J * C * ||Delta . J(x)||^2, Delta from SW(adv, clean) - paper Eq. 12, 14"

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        x_req = x.detach().clone().requires_grad_(True)
        clean = model(x_req)
        with torch.no_grad():
            adv = model(x_adv)
        theta = random_projections(clean.shape[1], self.params.num_projections, device=x.device, dtype=clean.dtype)
        _, directions = sliced_wasserstein(adv, clean.detach(), theta)
        ce = F.cross_entropy(clean, y)
        jac = jacobian_penalty(x_req, clean, directions)
        return Loss(ce + self.params.lambda_j * jac, {"ce": ce.detach(), "jacobian": jac.detach()})
