"""The attack interface: one small base class, one override point (`perturb`).

The registry holds attack *kinds* (pgd, fgsm, autoattack, ...), each with a params model.
params.yaml holds the *instances*: `attack.<name>` is one configured attack (`pgd20: {attack:
pgd, steps: 20, ...}`), and its name is its key in the records. Every hyper-parameter is
written there; the budget comes from the `threat` block unless the instance sets its own
`eps` (docs/attacks.md). The evaluator calls `perturb` with the model in eval mode and its
parameters frozen, on clean-correct examples only.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from importlib import metadata
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..core.errors import UserError
from ..core.pgd import Norm, fit_l2
from ..core.registry import Registry
from ..core.schema import Strict, budget_limit


class Attack(ABC):
    #: The registry name of this kind of attack; an instance's `name` is its key in params.yaml and the records.
    kind: ClassVar[str]
    Params: ClassVar[type[Strict]]
    #: What actually runs, e.g. 'torchattacks.FAB' or 'pipeline.attacks.iterative'.
    implementation: ClassVar[str]
    #: Smallest class count the attack works with (APGD-T's DLR loss needs 4).
    min_classes: ClassVar[int] = 2
    #: What the attack sees: gradients ('white-box'), scores only ('black-box'), or both ('ensemble').
    access: ClassVar[Literal["white-box", "black-box", "ensemble"]] = "white-box"
    #: Iterates on the loss gradient (sanity rule 3 holds these to be at least as strong as FGSM).
    iterative: ClassVar[bool] = False
    #: Weaker kinds: on the same threat model (norm, eps) accuracy under this attack should not exceed
    #: theirs beyond sampling tolerance (`outranks`; the suite test checks it for every pair of the suite).
    at_least_as_strong_as: ClassVar[tuple[str, ...]] = ()
    #: Runs on the fp32 model even under `attack.precision: bf16`: its result depends on logit
    #: differences below bf16's resolution (FAB's and DeepFool's linearisation, Square's
    #: accept/reject of a query), which measurably weakened it (docs/benchmarks.md).
    fp32_only: ClassVar[bool] = False
    #: Rough work per test image, PGD-20 = 1 (one-core seconds on a Fashion-MNIST PGD-AT model,
    #: docs/results/fashion-mnist-tiers.md); it only orders the attacks handed to worker processes
    #: (`attack.workers`: the dearest first), never a result.
    cost: float = 1.0

    def __init__(self, params: Strict, num_classes: int, seed: int = 0, name: str | None = None):
        self.name = name or self.kind
        if num_classes < self.min_classes:
            raise UserError(f"attack.suite: {self.name} needs at least {self.min_classes} classes, the dataset has {num_classes}")
        self.params = params
        self.num_classes = num_classes
        self.seed = seed

    @property
    def eps(self) -> float:
        return float(self.params.eps)

    @property
    def norm(self) -> Norm:
        """Threat model the validity check enforces: the eps-ball of this norm."""
        return self.params.norm

    def same_threat(self, other: "Attack") -> bool:
        """Both attack the same ball (norm and eps), so their accuracies are comparable."""
        return self.norm == other.norm and math.isclose(self.eps, other.eps)

    def outranks(self, other: "Attack") -> bool:
        """Whether this attack should be no weaker than `other`: a weaker kind on the same threat model."""
        return other is not self and other.kind in self.at_least_as_strong_as and self.same_threat(other)

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raise `UserError` if the attack cannot run on images of this shape (before any work)."""

    def check_budget(self, shape: tuple[int, ...]) -> None:
        """Raise `UserError` if eps exceeds its threat model on images of `shape`: 1 (L-inf), sqrt(C*H*W) (L2)."""
        limit = budget_limit(self.norm, shape)
        if not 0 < self.eps <= limit:
            bound = ("1 (pixels lie in [0, 1])" if self.norm == "linf"
                     else f"{limit:.4g}, the L2 diameter of {tuple(shape)} images")
            raise UserError(f"attack.{self.name}.eps: {self.eps} is outside the {self.norm} threat model; "
                            f"at most {bound}")

    @abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial versions of `x` (same shape, in [0, 1], within the budget)."""

    def within_budget(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """`x_adv` with L2 rows that float32 rounding pushed past eps (+ slack) pulled back inside."""
        return fit_l2(x, x_adv, self.eps) if self.norm == "l2" else x_adv

    def results(self) -> dict[str, Any]:
        """Figures beyond accuracy gathered while attacking (e.g. DeepFool's median distance)."""
        return {}

    def gathered(self) -> dict[str, torch.Tensor]:
        """What `results` is computed from, as tensors: the evaluator takes it after each block of images."""
        return {}

    def restore(self, parts: list[dict[str, torch.Tensor]]) -> None:
        """Make `results` those of the blocks whose `gathered()` are `parts`, in block order ([]: none yet)."""

    def describe(self) -> dict[str, Any]:
        """Hyper-parameters and implementation, written next to the accuracy."""
        return {"params": self.params.model_dump(), "norm": self.norm, "implementation": self.implementation,
                "implementation_version": implementation_version(self.implementation)}


def implementation_version(implementation: str) -> str:
    versions = []
    for part in implementation.split("+"):
        package = part.strip().split(".")[0]
        dist = {"pipeline": "otjr-pipeline"}.get(package, package)
        try:
            entry = f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            entry = f"{dist} unknown"
        if entry not in versions:
            versions.append(entry)
    return ", ".join(versions)


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register(cls: type[Attack]) -> type[Attack]:
    return ATTACKS.register(cls.kind)(cls)


def build(block, name: str, num_classes: int, seed: int = 0) -> Attack:
    """Instance `name` of the attack block (`params.attack`): its kind, built with its validated settings."""
    return ATTACKS.get(block.kinds[name], key="attack.suite")(block.settings[name], num_classes, seed, name=name)
