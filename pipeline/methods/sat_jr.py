"""SAT + random JR (paper Table 6): SAT's objective plus lambda_J * random Jacobian penalty at the clean input."""

from __future__ import annotations

from ..losses import random_directions_penalty
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
    uses_jacobian = True

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        p = self.params
        clean, penalty = self.setup.jacobian.clean_pass(model, x)
        sat = sat_terms(p, clean, model(x_adv), y)
        jac = random_directions_penalty(penalty, clean, p.n_proj)
        return Loss(sat.total + p.lambda_j * jac, {**sat.terms, "jacobian": jac.detach()})
