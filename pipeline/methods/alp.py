"""ALP (Kannan et al. 2018; paper Table 1): mixed clean/adversarial CE plus adversarial logit pairing.

alpha * CE(f(x), y) + (1 - alpha) * CE(f(x_adv), y) + lambda_pair * mean_i ||f(x_adv_i) - f(x_i)||^2.
(The paper's Table 1 writes x_adv in both CE terms, a typo.) The paper does not state
lambda_pair; params.yaml records the value used.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field

from ..core.schema import NonNegativeReal, Real, Strict
from .base import Loss, Method, register


class ALPParams(Strict):
    alpha: Real = Field(ge=0, le=1)
    lambda_pair: NonNegativeReal


@register
class ALP(Method):
    name = "alp"
    Params = ALPParams
    param_block = "alp"
    summary = "alpha * CE(f(x), y) + (1 - alpha) * CE(f(x_adv), y) + lambda * ||f(x_adv) - f(x)||^2 - Kannan et al. 2018"

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        p = self.params
        clean, adv = model(x), model(x_adv)
        ce, ce_adv = F.cross_entropy(clean, y), F.cross_entropy(adv, y)
        pair = (adv - clean).pow(2).sum(1).mean()
        total = p.alpha * ce + (1 - p.alpha) * ce_adv + p.lambda_pair * pair
        return Loss(total, {"ce": ce.detach(), "ce_adv": ce_adv.detach(), "pair": pair.detach()})
