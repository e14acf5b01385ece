"""Add-ons that shape a method's training step (AWP, LBGAT): their interface and registry.

An add-on hooks into the shared step (`pipeline.train.step`): it may own extra modules
and optimizers (saved in the resume state), replace the method's supervised term with a
guide, and perturb the weights for the step's gradient. Each add-on's settings live in
the params.yaml block named like it; which methods it combines with is declared by the
methods (`Method.addons`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import torch
from torch import nn

from ..core.registry import Registry
from ..core.schema import Strict
from .base import Guide


def _same(tensors: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    return tensors


@dataclass(frozen=True)
class AddOnSetup:
    """What an add-on may use: the student, its optimizer, a builder of same-architecture models,
    and the mean over the training processes of per-process tensors (identity in one process)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    new_model: Callable[[], nn.Module]
    mean_over_ranks: Callable[[Sequence[torch.Tensor]], Sequence[torch.Tensor]] = _same


class AddOn:
    name: ClassVar[str]
    Params: ClassVar[type[Strict]]
    summary: ClassVar[str] = ""

    def __init__(self, params: Strict, setup: AddOnSetup):
        self.params = params
        self.setup = setup

    @classmethod
    def param_keys(cls) -> tuple[str, ...]:
        """Its params.yaml block, named like the add-on."""
        return (cls.name,)

    def modules(self) -> dict[str, nn.Module]:
        """Extra trained modules, by name (part of the resume state)."""
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Extra optimizers, by name (part of the resume state; the LR schedule applies to them)."""
        return {}

    def guide(self, x: torch.Tensor, y: torch.Tensor) -> Guide | None:
        """A replacement for the method's supervised term on this batch, or None."""
        return None

    def perturb_weights(self, objective: Callable[[], torch.Tensor], epoch: int) -> Callable[[], None] | None:
        """Perturb the student's weights before the step's gradient; returns the exact restore, or None."""
        return None

    def terms(self) -> dict[str, torch.Tensor]:
        """Detached scalars of the last step worth logging."""
        return {}


#: Each add-on is the module named like it, imported when first asked for (as the methods).
ADDONS: Registry[type[AddOn]] = Registry("add-on", __package__, ("awp", "lbgat"))


def register_addon(cls: type[AddOn]) -> type[AddOn]:
    return ADDONS.register(cls.name)(cls)
