"""Random JR (Hoffman et al. 2019; paper Eq. 14 with Eq. 5): CE(f(x), y) + lambda_J * random Jacobian penalty.

No adversarial examples. n_proj = 1 is the paper's estimator; n_proj > 1 averages draws;
n_proj = -1 uses the exact squared Frobenius norm.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import field_validator

from ..core.schema import NonNegativeReal, Strict
from ..losses import random_jacobian_penalty
from .base import Loss, Method, register


class RandJRParams(Strict):
    lambda_j: NonNegativeReal
    n_proj: int

    @field_validator("n_proj")
    @classmethod
    def _projections(cls, v: int) -> int:
        if v < 1 and v != -1:
            raise ValueError("must be >= 1 (random directions averaged) or -1 (exact)")
        return v


@register
class RandJR(Method):
    name = "rand_jr"
    Params = RandJRParams
    param_block = "rand_jr"
    summary = "CE(f(x), y) + lambda_J * C * ||v . J(x)||^2, v random unit - Hoffman et al. 2019 (paper Eq. 5, 14)"

    def adversarial(self, model, x, y):
        return None

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        x_req = x.detach().clone().requires_grad_(True)
        clean = model(x_req)
        ce = F.cross_entropy(clean, y)
        jac = random_jacobian_penalty(x_req, clean, self.params.n_proj)
        return Loss(ce + self.params.lambda_j * jac, {"ce": ce.detach(), "jacobian": jac.detach()})
