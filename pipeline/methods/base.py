"""The method interface: a training objective computed from one clean batch.

A method is one small class registered by name. It declares where its settings live in
params.yaml (its own block, or top-level keys for OTJR, as users type them), how it makes
its training adversarial examples, and the objective to minimise given them, plus any
terms worth logging. Splitting the attack from the objective is what lets add-ons (AWP,
LBGAT) reuse one batch's adversarial examples for their own passes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

import torch
from torch import nn

from ..core.registry import Registry
from ..core.schema import Strict
from ..core.pgd import Adversary
from .jacobian import Exact, JacobianMode

#: Replaces a method's supervised term (LBGAT): adversarial logits of the student -> scalar loss.
Guide = Callable[[torch.Tensor], torch.Tensor]


class NoParams(Strict):
    """A method without settings of its own."""


class Loss(NamedTuple):
    total: torch.Tensor
    terms: dict[str, torch.Tensor]  # detached scalars, logged per epoch (no host sync per step)


@dataclass(frozen=True)
class Setup:
    """What a method may use besides the batch: the training adversary, the task size, and how the
    Jacobian penalty is computed (exact by default; `speed.jacobian`)."""

    adversary: Adversary
    num_classes: int
    jacobian: JacobianMode = Exact()


class Method(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[Strict]] = NoParams
    #: params.yaml key holding `Params`; None means its fields are top-level keys.
    param_block: ClassVar[str | None] = None
    #: Short description with the paper reference, shown in the README and `otjr --help`.
    summary: ClassVar[str] = ""
    #: Add-ons this method combines with (their names in the ADDONS registry).
    addons: ClassVar[frozenset[str]] = frozenset()
    #: Whether the objective has a Jacobian penalty (computed as `Setup.jacobian` says).
    uses_jacobian: ClassVar[bool] = False

    def __init__(self, params: Strict, setup: Setup):
        self.params = params
        self.setup = setup

    @classmethod
    def param_keys(cls) -> tuple[str, ...]:
        """The params.yaml keys this method reads (what its DVC train stage lists)."""
        if not cls.Params.model_fields:
            return ()
        return (cls.param_block,) if cls.param_block else tuple(cls.Params.model_fields)

    @classmethod
    def param_prefix(cls) -> str:
        return cls.param_block or ""

    def epochs(self, default: int) -> int:
        """Training length: the method's own `epochs` setting where it has one (SAT: 400), else `default`."""
        return getattr(self.params, "epochs", None) or default

    @property
    def double_backward(self) -> bool:
        """Whether the objective differentiates through input gradients (torch.compile cannot)."""
        return self.uses_jacobian and self.setup.jacobian.double_backward

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """This batch's training adversarial examples (detached); by default PGD on the CE loss.

        Methods that train on clean inputs only return None.
        """
        return self.setup.adversary.perturb(model, x, y)

    @abstractmethod
    def objective(
        self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor | None, y: torch.Tensor, guide: Guide | None = None
    ) -> Loss:
        """The objective for one batch given its adversarial examples; `model` is in train mode.

        `guide` is only passed to methods listing 'lbgat' in `addons`: it replaces the
        method's supervised (label) term, taking the adversarial logits.
        """

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Loss:
        """Attack, then the objective: one batch's training loss."""
        return self.objective(model, x, self.adversarial(model, x, y), y)


#: Each method is the module named like it, imported when first asked for: a training imports only its own.
METHODS: Registry[type[Method]] = Registry(
    "method", __package__, ("alp", "opt_jr", "otjr", "pgd_at", "rand_jr", "sat", "sat_jr", "sw", "trades", "xe"))


def register(cls: type[Method]) -> type[Method]:
    return METHODS.register(cls.name)(cls)


def method_settings(cls: type[Method], raw: dict[str, Any]) -> dict[str, Any]:
    """The slice of params.yaml that `cls.Params` validates."""
    if cls.param_block:
        block = raw.get(cls.param_block, {})
        return block if isinstance(block, dict) else {"": block}
    return {k: raw[k] for k in cls.Params.model_fields if k in raw}
