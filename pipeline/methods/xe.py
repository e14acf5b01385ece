"""XE: plain cross-entropy on clean inputs (the undefended baseline)."""

from __future__ import annotations

import torch.nn.functional as F

from .base import Loss, Method, register


@register
class XE(Method):
    name = "xe"
    summary = "CE(f(x), y) - standard training, no defense"

    def adversarial(self, model, x, y):
        return None

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        ce = F.cross_entropy(model(x), y)
        return Loss(ce, {"ce": ce.detach()})
