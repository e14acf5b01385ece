"""SW (paper Table 2, OTJR's first component): CE(f(x_adv), y) + lambda_SW * SW(adversarial, clean logits)."""

from __future__ import annotations

import torch.nn.functional as F

from ..core.schema import NonNegativeReal, PositiveInt, Strict
from ..losses import random_projections, sliced_wasserstein
from .base import Loss, Method, register


class SWParams(Strict):
    lambda_sw: NonNegativeReal
    num_projections: PositiveInt


@register
class SW(Method):
    name = "sw"
    Params = SWParams
    param_block = "sw"
    summary = "CE(f(x_adv), y) + lambda_SW * SW(adv logits, clean logits) - paper Eq. 9, Table 2"

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        clean, adv = model(x), model(x_adv)
        theta = random_projections(clean.shape[1], self.params.num_projections, device=x.device, dtype=clean.dtype)
        sw, _ = sliced_wasserstein(adv, clean, theta)
        ce = F.cross_entropy(adv, y)
        return Loss(ce + self.params.lambda_sw * sw, {"ce_adv": ce.detach(), "sw": sw.detach()})
