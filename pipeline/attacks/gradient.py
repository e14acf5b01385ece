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
    name = "fgsm"
    Params = FGSMParams
    implementation = "torchattacks.FGSM"
    cost = 0.1  # see Attack.cost

    def perturb(self, model, x, y) -> torch.Tensor:
        import torchattacks  # torchattacks takes seconds to import: only the attacks built on it load it

        return torchattacks.FGSM(model, eps=self.eps)(x, y)


class PGD(Attack):
    """PGD on cross-entropy (Madry et al.): signed (L-inf) or normalised (L2) steps, random start."""

    Params = PGDParams
    implementation = "pipeline.attacks.iterative"
    iterative = True

    @property
    def cost(self) -> float:
        """PGD-20 is the unit; PGD-100 costs five."""
        return self.params.steps / 20

    def perturb(self, model, x, y) -> torch.Tensor:
        p = self.params
        return ascend(model, x, on_labels(cross_entropy, y), eps=p.eps, step=p.step, steps=p.steps, norm=p.norm,
                      start="uniform" if p.random_start else None, labels=y).x_adv


def pgd_attack(name: str, weaker: tuple[str, ...] = ()) -> type[PGD]:
    """`PGD` registered as `name`: its steps, budget and norm are its params block's (`attack.<name>`),
    so PGD-20 and PGD-100 are one attack under two names; `weaker` is what it must beat."""
    return register(type(f"PGD_{name}", (PGD,), {"name": name, "at_least_as_strong_as": weaker,
                                                   "__module__": __name__, "__doc__": PGD.__doc__}))


PGD20 = pgd_attack("pgd20", ("fgsm",))
#: With the same seed PGD-100's first 20 iterates are PGD-20's, so it fools a superset.
PGD100 = pgd_attack("pgd100", ("pgd20",))
L2PGD = pgd_attack("l2_pgd")


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
        return ascend(model, x, on_labels(cross_entropy, y), eps=p.eps, step=p.step, steps=p.steps, norm="linf",
                      start=None, decay=p.decay, labels=y).x_adv


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
        return ascend(model, x, on_labels(cw_loss(p.kappa), y), eps=p.eps, step=p.step, steps=p.steps, norm="linf",
                      start="uniform" if p.random_start else None, labels=y).x_adv
