"""One optimisation step of a method: the seam where add-ons and speed options plug in."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..methods import Loss, Method


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, method: Method) -> Callable[[torch.Tensor, torch.Tensor], Loss]:
    """One optimisation step of `method` (add-ons wrap this)."""

    def step(x: torch.Tensor, y: torch.Tensor) -> Loss:
        loss = method.loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        return loss

    return step
