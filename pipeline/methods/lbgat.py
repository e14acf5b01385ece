"""LBGAT (Cui et al. 2021): learnable boundary guided adversarial training.

A natural teacher of the student's architecture is trained jointly on clean inputs; the
student's supervised term is replaced by CE(teacher(x), y) + lambda_guide * MSE(student(x_adv),
teacher(x)), the mean squared error over batch and classes as in the authors' code (whose
TRADES variant keeps the KL term and drops the student's clean CE, as here). The teacher and
its optimizer (same hyper-parameters and LR schedule as the student's) are part of the
resume state; only the student is checkpointed and evaluated.
"""

from __future__ import annotations

import torch.nn.functional as F

from ..core.schema import NonNegativeReal, Strict
from .addons import AddOn, AddOnSetup, register_addon


class LBGATParams(Strict):
    lambda_guide: NonNegativeReal


@register_addon
class LBGAT(AddOn):
    name = "lbgat"
    Params = LBGATParams
    summary = "jointly trained natural teacher; student's adversarial logits regress on its clean logits - Cui et al. 2021"

    def __init__(self, params: LBGATParams, setup: AddOnSetup):
        super().__init__(params, setup)
        self.teacher = setup.new_model()
        self.teacher_optimizer = type(setup.optimizer)(self.teacher.parameters(), **setup.optimizer.defaults)
        self._terms = {}

    def modules(self):
        return {"teacher": self.teacher}

    def optimizers(self):
        return {"teacher_sgd": self.teacher_optimizer}

    def guide(self, x, y):
        self.teacher.train()
        teacher = self.teacher(x)
        teacher_ce = F.cross_entropy(teacher, y)

        def guide(adv_logits):
            mse = F.mse_loss(adv_logits, teacher)
            self._terms = {"teacher_ce": teacher_ce.detach(), "guide_mse": mse.detach()}
            return teacher_ce + self.params.lambda_guide * mse

        return guide

    def terms(self):
        return self._terms
