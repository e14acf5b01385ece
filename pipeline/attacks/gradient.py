"""White-box gradient attacks from torchattacks: FGSM and L-inf PGD."""

from __future__ import annotations

import torch

from ..core.schema import PositiveBudget, PositiveInt, Strict
from .base import Attack, register


class FGSMParams(Strict):
    eps: PositiveBudget


class PGDParams(Strict):
    eps: PositiveBudget
    step: PositiveBudget
    steps: PositiveInt


@register
class FGSM(Attack):
    name = "fgsm"
    Params = FGSMParams
    norm = "linf"
    implementation = "torchattacks.FGSM"

    def perturb(self, model, x, y) -> torch.Tensor:
        import torchattacks

        return torchattacks.FGSM(model, eps=self.eps)(x, y)


@register
class PGD20(Attack):
    """L-inf PGD with uniform random start (the paper's PGD-20: eps 8/255, step 2/255, 20 steps)."""

    name = "pgd20"
    Params = PGDParams
    norm = "linf"
    implementation = "torchattacks.PGD"

    def perturb(self, model, x, y) -> torch.Tensor:
        import torchattacks

        p = self.params
        return torchattacks.PGD(model, eps=p.eps, alpha=p.step, steps=p.steps, random_start=True)(x, y)
