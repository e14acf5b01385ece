"""One optimisation step of a run: the seam where add-ons (and speed options) plug in.

The step attacks once per batch, lets the add-on (if any) supply a guide for the
supervised term and perturb the weights, computes the objective's gradient, restores the
weights exactly and steps every optimizer (the student's and the add-on's own).
"""

from __future__ import annotations

import torch
from torch import nn

from ..methods import AddOn, Loss, Method


class Step:
    """A run's training step; `modules` and `optimizers` are what the resume state must hold."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, method: Method, addon: AddOn | None = None):
        self.model, self.optimizer, self.method, self.addon = model, optimizer, method, addon
        self.epoch = 0

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, **(self.addon.modules() if self.addon else {})}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"sgd": self.optimizer, **(self.addon.optimizers() if self.addon else {})}

    def start_epoch(self, epoch: int, lr: float) -> None:
        """Set the epoch's learning rate on every optimizer and put the trained modules in train mode."""
        self.epoch = epoch
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
        for module in self.modules.values():
            module.train()

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> Loss:
        """The run's objective on a batch at the current weights, without updating anything."""
        x_adv = self.method.adversarial(self.model, x, y)
        guide = self.addon.guide(x, y) if self.addon else None
        return self.method.objective(self.model, x, x_adv, y, guide)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Loss:
        x_adv = self.method.adversarial(self.model, x, y)
        guide = restore = None
        if self.addon:
            guide = self.addon.guide(x, y)
            restore = self.addon.perturb(lambda: self.method.objective(self.model, x, x_adv, y).total, self.epoch)
        loss = self.method.objective(self.model, x, x_adv, y, guide)
        optimizers = list(self.optimizers.values())
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.total.backward()
        if restore is not None:
            restore()
        for opt in optimizers:
            opt.step()
        if self.addon:
            loss = Loss(loss.total, {**loss.terms, **self.addon.terms()})
        return loss


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, method: Method, addon: AddOn | None = None) -> Step:
    """One optimisation step of `method`, shaped by `addon`."""
    return Step(model, optimizer, method, addon)
