"""PGD-AT (Madry et al. 2018): cross-entropy on PGD adversarial examples."""

from __future__ import annotations

import torch.nn.functional as F

from .base import Loss, Method, register


@register
class PGDAT(Method):
    name = "pgd_at"
    summary = "CE(f(x_adv), y) - Madry et al. 2018 (paper Table 1)"

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        ce = F.cross_entropy(model(x_adv), y)
        return Loss(ce, {"ce_adv": ce.detach()})
