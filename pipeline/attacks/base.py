"""The attack interface: one small base class, one override point (`perturb`).

Each attack is registered under its result-schema key (fgsm, pgd20, ...) with a params
model for its block in params.yaml. The evaluator calls `perturb` with the model in eval
mode and its parameters frozen, on clean-correct examples only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..core.registry import Registry
from ..core.schema import Strict


class Attack(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[Strict]]
    #: Threat model the validity check enforces: 'linf' or 'l2' ball of radius params.eps.
    norm: ClassVar[Literal["linf", "l2"]]
    #: What actually runs, e.g. 'torchattacks.PGD' or 'pipeline.attacks.cw_inf'.
    implementation: ClassVar[str]

    def __init__(self, params: Strict, num_classes: int):
        self.params = params
        self.num_classes = num_classes

    @property
    def eps(self) -> float:
        return float(self.params.eps)

    @abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial versions of `x` (same shape, in [0, 1], within the budget)."""

    def describe(self) -> dict[str, Any]:
        """Hyper-parameters and implementation, written next to the accuracy."""
        return {"params": self.params.model_dump(), "norm": self.norm, "implementation": self.implementation,
                "implementation_version": implementation_version(self.implementation)}


def implementation_version(implementation: str) -> str:
    from importlib import metadata

    package = implementation.split(".")[0]
    dist = {"pipeline": "otjr-pipeline"}.get(package, package)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register(cls: type[Attack]) -> type[Attack]:
    return ATTACKS.register(cls.name)(cls)
