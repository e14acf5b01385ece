"""SAT + random JR (paper Table 6): SAT's objective plus lambda_J * random Jacobian penalty at the clean input."""

from __future__ import annotations

from ..losses import random_jacobian_penalty
from .base import Loss, Method, register
from .rand_jr import RandJRParams
from .sat import SATParams, sat_terms


class SATJRParams(SATParams, RandJRParams):
    """SAT's settings and random JR's, in one block."""


@register
class SATJR(Method):
    name = "sat_jr"
    Params = SATJRParams
    param_block = "sat_jr"
    summary = "SAT + lambda_J * random Jacobian penalty (naive combination) - paper Table 6"

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        p = self.params
        x_req = x.detach().clone().requires_grad_(True)
        clean = model(x_req)
        sat = sat_terms(p, clean, model(x_adv), y)
        jac = random_jacobian_penalty(x_req, clean, p.n_proj)
        return Loss(sat.total + p.lambda_j * jac, {**sat.terms, "jacobian": jac.detach()})
