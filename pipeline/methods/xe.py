"""XE: plain cross-entropy on clean inputs (the undefended baseline)."""

from __future__ import annotations

import torch.nn.functional as F

from .base import Loss, Method, register


@register
class XE(Method):
    name = "xe"
    summary = "CE(f(x), y) - standard training, no defense"

    def loss(self, model, x, y) -> Loss:
        ce = F.cross_entropy(model(x), y)
        return Loss(ce, {"ce": ce.detach()})
