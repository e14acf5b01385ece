"""SAT (Bouniot et al. 2021): CE(f(x_adv), y) + lambda_ot * S_eps(adversarial logits, clean logits).

S_eps is the debiased Sinkhorn divergence with squared Euclidean cost, entropic eps and
a fixed number of iterations (paper: eps = 1, 50 iterations, lambda = 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.schema import NonNegativeReal, PositiveInt, PositiveReal, Strict
from ..losses import sinkhorn_divergence
from .base import Loss, Method, register


class SATParams(Strict):
    lambda_ot: NonNegativeReal
    entropic_eps: PositiveReal
    iterations: PositiveInt
    #: SAT needs longer training on many-class data (paper: 400 epochs on CIFAR-100 and ImageNet100);
    #: absent or null means train.epochs. The LR milestones scale with it.
    epochs: PositiveInt | None = None


def sat_terms(params: SATParams, clean: torch.Tensor, adv: torch.Tensor, y: torch.Tensor) -> Loss:
    """SAT's objective from the clean and adversarial logits (shared with SAT+JR)."""
    ce = F.cross_entropy(adv, y)
    ot = sinkhorn_divergence(adv, clean, params.entropic_eps, params.iterations)
    return Loss(ce + params.lambda_ot * ot, {"ce_adv": ce.detach(), "sinkhorn": ot.detach()})


@register
class SAT(Method):
    name = "sat"
    Params = SATParams
    param_block = "sat"
    summary = "CE(f(x_adv), y) + lambda * S_eps(adv logits, clean logits), debiased Sinkhorn - Bouniot et al. 2021"

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        return sat_terms(self.params, model(x), model(x_adv), y)
