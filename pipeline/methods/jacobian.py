"""How the Jacobian-regularised methods (otjr, opt_jr, rand_jr, sat_jr) run their clean pass.

The penalty needs the clean logits with a graph back to the inputs. `Exact` is the paper's
double backward; `FiniteDifference` (`speed.jacobian: finite_difference`) replaces it by a
forward difference along the gradient in fp32. `model` may be the trainer's speed wrapper
(`pipeline.train.speed.Forward`); the finite difference runs on its full-precision view.
The step gives double-backward objectives an eager (uncompiled) model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import nn

from ..losses import finite_difference_jacobian_penalty, jacobian_penalty
from ..core.passes import batch_statistics_only


class CleanPass(NamedTuple):
    logits: torch.Tensor
    penalty: Callable[[torch.Tensor], torch.Tensor]  # output directions (B, C) -> the Jacobian penalty


@dataclass(frozen=True)
class Exact:
    """C * mean_i ||d(directions_i . f(x)_i) / dx_i||^2 by double backward (paper Eq. 12)."""

    double_backward = True

    def clean_pass(self, model: nn.Module, x: torch.Tensor) -> CleanPass:
        x_req = x.detach().clone().requires_grad_(True)
        logits = model(x_req)  # eager: the step does not compile a double-backward objective
        return CleanPass(logits, lambda directions: jacobian_penalty(x_req, logits, directions))


@dataclass(frozen=True)
class FiniteDifference:
    """The same penalty from a forward difference of size `step` (fp32, no double backward)."""

    step: float
    double_backward = False

    def clean_pass(self, model: nn.Module, x: torch.Tensor) -> CleanPass:
        forward = getattr(model, "full_precision", model)
        x_req = x.detach().clone().requires_grad_(True)
        logits = forward(x_req)

        def moved(inputs: torch.Tensor) -> torch.Tensor:
            with batch_statistics_only(model):  # the extra pass must not count towards BN running statistics
                return forward(inputs)

        return CleanPass(logits, lambda d: finite_difference_jacobian_penalty(moved, x_req, logits, d, self.step))


JacobianMode = Exact | FiniteDifference


def jacobian_mode(kind: str, step: float) -> JacobianMode:
    """`speed.jacobian` and `speed.fd_step` as the methods use them."""
    return FiniteDifference(step) if kind == "finite_difference" else Exact()
