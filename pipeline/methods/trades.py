"""TRADES (Zhang et al. 2019; paper Table 1): CE(f(x), y) + beta * KL(S(f(x)) || S(f(x_adv))).

The adversarial examples maximise the same KL term, with the clean probabilities computed
once per batch (model frozen in eval mode, as the attack itself runs). The attack starts
where every training adversary does (`adversary.start`): uniform in the eps-ball by
default; the paper presets use TRADES' own start, x + 0.001 * N(0, I).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.schema import NonNegativeReal, Strict
from ..core.passes import frozen
from .base import Loss, Method, register


class TRADESParams(Strict):
    beta: NonNegativeReal


def kl_clean_to_adv(clean_logits: torch.Tensor, adv_logits: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """KL(S(clean) || S(adv)) per the TRADES code: the clean distribution is the reference."""
    return F.kl_div(F.log_softmax(adv_logits, dim=1), F.log_softmax(clean_logits, dim=1), reduction=reduction,
                    log_target=True)


@register
class TRADES(Method):
    name = "trades"
    Params = TRADESParams
    param_block = "trades"
    summary = "CE(f(x), y) + beta * KL(S(f(x)) || S(f(x_adv))), attack maximises the KL - Zhang et al. 2019"
    addons = frozenset({"awp", "lbgat"})

    def adversarial(self, model, x, y):
        with frozen(model), torch.no_grad():
            clean = model(x)
        return self.setup.adversary.perturb_loss(model, x, lambda adv: kl_clean_to_adv(clean, adv, reduction="sum"))

    def objective(self, model, x, x_adv, y, guide=None) -> Loss:
        clean, adv = model(x), model(x_adv)
        kl = kl_clean_to_adv(clean, adv)
        supervised = F.cross_entropy(clean, y) if guide is None else guide(adv)
        total = supervised + self.params.beta * kl
        first = "ce" if guide is None else "guide"
        return Loss(total, {first: supervised.detach(), "kl": kl.detach()})
