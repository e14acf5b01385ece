"""White-box first-order attacks: FGSM, PGD (L-inf and L2), MIM and CW-inf.

FGSM is torchattacks' (one step, nothing to stop early). The iterative ones run on
`iterative.ascend`, which follows torchattacks' PGD / PGDL2 / MIFGSM step rules exactly but
drops each example from the batch at its first misclassified iterate.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..core.schema import NonNegativeReal, PositiveBudget, PositiveInt, Strict
from .base import Attack, register
from .iterative import ascend, cross_entropy, cw_loss


class FGSMParams(Strict):
    norm: Literal["linf"]
    eps: PositiveBudget


class PGDParams(Strict):
    norm: Literal["linf", "l2"]
    eps: PositiveBudget
    step: PositiveBudget
    steps: PositiveInt
    random_start: bool


class MIMParams(Strict):
    norm: Literal["linf"]
    eps: PositiveBudget
    step: PositiveBudget
    steps: PositiveInt
    decay: NonNegativeReal


class CWParams(Strict):
    norm: Literal["linf"]
    eps: PositiveBudget
    step: PositiveBudget
    steps: PositiveInt
    kappa: NonNegativeReal
    random_start: bool


@register
class FGSM(Attack):
    name = "fgsm"
    Params = FGSMParams
    implementation = "torchattacks.FGSM"

    def perturb(self, model, x, y) -> torch.Tensor:
        import torchattacks

        return torchattacks.FGSM(model, eps=self.eps)(x, y)


class PGD(Attack):
    """PGD on cross-entropy (Madry et al.): signed (L-inf) or normalised (L2) steps, random start."""

    Params = PGDParams
    implementation = "pipeline.attacks.iterative"
    iterative = True

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        return ascend(model, x, y, cross_entropy, eps=p.eps, step=p.step, steps=p.steps, norm=p.norm,
                      start=p.random_start).x_adv


@register
class PGD20(PGD):
    name = "pgd20"
    at_least_as_strong_as = ("fgsm",)


@register
class PGD100(PGD):
    """PGD-100; with the same seed its first 20 iterates are PGD-20's, so it fools a superset."""

    name = "pgd100"
    at_least_as_strong_as = ("pgd20",)


@register
class L2PGD(PGD):
    name = "l2_pgd"


@register
class MIM(Attack):
    """Momentum iterative FGSM (Dong et al. 2018, paper Eq. 19-20): no random start."""

    name = "mim"
    Params = MIMParams
    implementation = "pipeline.attacks.iterative"
    iterative = True
    at_least_as_strong_as = ("fgsm",)

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        return ascend(model, x, y, cross_entropy, eps=p.eps, step=p.step, steps=p.steps, norm="linf", start=False,
                      decay=p.decay).x_adv


@register
class CWInf(Attack):
    """CW-inf: L-inf PGD on Carlini-Wagner's margin loss with confidence kappa (torchattacks' CW is L2)."""

    name = "cw_inf"
    Params = CWParams
    implementation = "pipeline.attacks.iterative"
    iterative = True
    at_least_as_strong_as = ("fgsm",)

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        return ascend(model, x, y, cw_loss(p.kappa), eps=p.eps, step=p.step, steps=p.steps, norm="linf",
                      start=p.random_start).x_adv
