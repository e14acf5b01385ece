"""AWP (Wu et al. 2020): adversarial weight perturbation.

Before each step's gradient, every weight matrix / kernel w_l moves by
v_l = gamma * ||w_l|| * g_l / ||g_l||, with g_l the gradient of the method's own objective
at the batch's adversarial examples (one normalised ascent step, layer-wise relative size
gamma). The step's gradient is taken at w + v and applied at w: the weights are restored
exactly (copied back) before the optimizer steps, which is Wu et al.'s
w <- w - lr * grad L(w + v) with no rounding residue. BN statistics are not touched by
the ascent pass. Biases and BN affine parameters are not perturbed (as in the authors' code).
"""

from __future__ import annotations

import torch
from pydantic import Field

from ..core.schema import NonNegativeInt, NonNegativeReal, Strict
from ..core.passes import batch_statistics_only
from .addons import AddOn, register_addon


class AWPParams(Strict):
    gamma: NonNegativeReal = Field(description="layer-wise relative size of the weight perturbation")
    warmup_epochs: NonNegativeInt = Field(description="epochs trained without perturbation first")


def weight_perturbation(weights: list[torch.Tensor], grads: list[torch.Tensor], gamma: float) -> list[torch.Tensor]:
    """v_l = gamma * ||w_l|| * g_l / ||g_l|| per tensor (a zero gradient gives a zero perturbation)."""
    return [
        gamma * w.norm() * g / g.norm().clamp_min(torch.finfo(g.dtype).tiny) for w, g in zip(weights, grads)
    ]


@register_addon
class AWP(AddOn):
    name = "awp"
    Params = AWPParams
    summary = "adversarial weight perturbation, one normalised ascent step of relative size gamma - Wu et al. 2020"

    def perturb_weights(self, objective, epoch):
        if epoch < self.params.warmup_epochs or self.params.gamma == 0:
            return None
        model = self.setup.model
        weights = [p for p in model.parameters() if p.ndim > 1 and p.requires_grad]
        with batch_statistics_only(model):  # the ascent pass must not count towards BN running statistics
            grads = self.setup.mean_over_ranks(torch.autograd.grad(objective(), weights))
        saved = [w.detach().clone() for w in weights]
        with torch.no_grad():
            for w, v in zip(weights, weight_perturbation(saved, grads, self.params.gamma)):
                w.add_(v)

        def restore() -> None:
            with torch.no_grad():
                for w, old in zip(weights, saved):
                    w.copy_(old)

        return restore
