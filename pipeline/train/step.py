"""One optimisation step of a run: the seam where add-ons, speed options and data parallelism plug in.

The step attacks once per batch, lets the add-on (if any) supply a guide for the
supervised term and perturb the weights, computes the objective's gradient, restores the
weights exactly and steps every optimizer (the student's and the add-on's own). Nothing
in it waits for the device (no `.item()`): losses come back as tensors.

The methods get the model as `pipeline.train.speed.forward_of` makes it (the model itself
unless a speed option is on; uncompiled for an objective with a double backward). The attack and AWP's ascent use this process's model
directly; the objective whose backward trains the weights goes through DDP when
training on several processes, so the gradients are averaged over the ranks.
"""

from __future__ import annotations

import torch
from torch import nn

from ..methods import AddOn, Loss, Method
from . import distributed
from .distributed import SINGLE, Ranks
from .speed import Speed, forward_of


class Step:
    """A run's training step; `modules` and `optimizers` are what the resume state must hold."""

    def __init__(self, model: nn.Module, optimizer, method: Method, addon: AddOn | None = None, *,
                 speed: Speed | None = None, ranks: Ranks = SINGLE, device: torch.device | None = None):
        self.model, self.optimizer, self.method, self.addon = model, optimizer, method, addon
        self.ranks = ranks
        self.epoch = 0
        self.local = forward_of(model, speed)
        synced = distributed.wrap(model, ranks, device or next(model.parameters()).device)
        self.synced = self.local if synced is model else forward_of(synced, speed)

    @property
    def trained(self) -> nn.Module:
        """The model the objective whose backward trains the weights gets."""
        # torch.compile does no double backward; and all of one backward's passes eager, as an eager
        # batch-norm pass saves the running statistics that a compiled one then updates in place
        return getattr(self.synced, "eager", self.synced) if self.method.double_backward else self.synced

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, **(self.addon.modules() if self.addon else {})}

    @property
    def optimizers(self) -> dict:
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
        x_adv = self.method.adversarial(self.local, x, y)
        guide = self.addon.guide(x, y) if self.addon else None
        return self.method.objective(self.local, x, x_adv, y, guide)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Loss:
        x_adv = self.method.adversarial(self.local, x, y)
        guide = restore = None
        if self.addon:
            guide = self.addon.guide(x, y)
            restore = self.addon.perturb_weights(lambda: self.method.objective(self.local, x, x_adv, y).total, self.epoch)
        loss = self.method.objective(self.trained, x, x_adv, y, guide)
        optimizers = list(self.optimizers.values())
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.total.backward()
        if self.ranks.distributed and self.addon:  # DDP averages the student's gradients, not the add-on's modules'
            distributed.average_gradients(list(self.addon.modules().values()), self.ranks)
        if restore is not None:
            restore()
        for opt in optimizers:
            opt.step()
        if self.addon:
            loss = Loss(loss.total, {**loss.terms, **self.addon.terms()})
        return loss

