"""White-box first-order attacks: FGSM, PGD (L-inf and L2), MIM and CW-inf.

FGSM is torchattacks' (one step, nothing to stop early). The iterative ones run on the
shared loop `pipeline.core.pgd.ascend`, which follows torchattacks' PGD / PGDL2 / MIFGSM step
rules exactly but drops each example from the batch at its first misclassified iterate.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..core.pgd import ascend
from ..core.schema import NonNegativeReal, PositiveBudget, PositiveInt, Strict
from .base import Attack, register
from .iterative import cross_entropy, cw_loss, on_labels


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
    kind = "fgsm"
    Params = FGSMParams
    implementation = "torchattacks.FGSM"
    cost = 0.1  # see Attack.cost

    def perturb(self, model, x, y) -> torch.Tensor:
        import torchattacks  # torchattacks takes seconds to import: only the attacks built on it load it

        return torchattacks.FGSM(model, eps=self.eps)(x, y)


@register
class PGD(Attack):
    """PGD on cross-entropy (Madry et al.): signed (L-inf) or normalised (L2) steps, random start.

    One kind for PGD-20, PGD-100 and L2-PGD: each is an instance in params.yaml (`attack: pgd`)."""

    kind = "pgd"
    Params = PGDParams
    implementation = "pipeline.attacks.iterative"
    iterative = True
    at_least_as_strong_as = ("fgsm",)

    @property
    def cost(self) -> float:
        """PGD-20 is the unit; PGD-100 costs five."""
        return self.params.steps / 20

    def outranks(self, other: Attack) -> bool:
        """Also a PGD with fewer steps and otherwise the same settings: with the same seed its iterates
        are this one's first ones (PGD-100 fools a superset of what PGD-20 fools)."""
        if isinstance(other, PGD) and other is not self:
            mine, theirs = self.params.model_dump(exclude={"steps"}), other.params.model_dump(exclude={"steps"})
            if mine == theirs and self.params.steps >= other.params.steps:
                return True
        return super().outranks(other)

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        return ascend(model, x, on_labels(cross_entropy, y), eps=p.eps, step=p.step, steps=p.steps, norm=p.norm,
                      start="uniform" if p.random_start else None, labels=y).x_adv


@register
class MIM(Attack):
    """Momentum iterative FGSM (Dong et al. 2018, paper Eq. 19-20): no random start."""

    kind = "mim"
    Params = MIMParams
    implementation = "pipeline.attacks.iterative"
    iterative = True
    at_least_as_strong_as = ("fgsm",)

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        return ascend(model, x, on_labels(cross_entropy, y), eps=p.eps, step=p.step, steps=p.steps, norm="linf",
                      start=None, decay=p.decay, labels=y).x_adv


@register
class CWInf(Attack):
    """CW-inf: L-inf PGD on Carlini-Wagner's margin loss with confidence kappa (torchattacks' CW is L2)."""

    kind = "cw_inf"
    Params = CWParams
    implementation = "pipeline.attacks.iterative"
    iterative = True
    at_least_as_strong_as = ("fgsm",)

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        return ascend(model, x, on_labels(cw_loss(p.kappa), y), eps=p.eps, step=p.step, steps=p.steps, norm="linf",
                      start="uniform" if p.random_start else None, labels=y).x_adv
