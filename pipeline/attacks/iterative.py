"""Projected gradient ascent with a per-example early stop: PGD (L-inf, L2), MIM and CW-inf.

One loop serves every first-order iterative attack of the suite. The step rules are those
of Madry et al. (L-inf: signed gradient; L2: normalised gradient) and Dong et al. (MIM:
momentum over L1-normalised gradients), written to match torchattacks' PGD, PGDL2 and
MIFGSM step for step (tests/test_attacks_reference.py checks this). What differs is cost:
an example leaves the batch at its first misclassified iterate, which is returned, so a
fooled example costs no further passes and the attack is never weaker than running on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

Norm = Literal["linf", "l2"]
#: Per-example loss to maximise: (logits, labels) -> tensor of shape (batch,).
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i != y} z_i: positive while the example is classified correctly."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def cw_loss(kappa: float) -> LossFn:
    """Carlini-Wagner's margin objective with confidence kappa: -max(margin + kappa, 0)."""
    return lambda logits, y: -(margin(logits, y) + kappa).clamp(min=0)


def per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (batch,) tensor shaped to broadcast over a batch of images like `like`."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def l2_norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    """Nearest point of the eps-ball around x (then of the [0, 1] box) on the attack's path."""
    delta = x_adv - x
    if norm == "linf":
        return (x + delta.clamp(-eps, eps)).clamp(0, 1)
    factor = torch.clamp(eps / l2_norms(delta), max=1.0)
    return (x + delta * per_row(factor, x)).clamp(0, 1)


def random_start(x: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    """Uniform in the L-inf ball; for L2 a random direction at a radius uniform in [0, eps]."""
    if norm == "linf":
        return (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    delta = torch.empty_like(x).normal_()
    n = per_row(l2_norms(delta), x)
    r = torch.zeros_like(n).uniform_(0, 1)
    return (x + delta * r / n * eps).clamp(0, 1)


def fit_l2(x: torch.Tensor, x_adv: torch.Tensor, eps: float, slack: float = 5e-7) -> torch.Tensor:
    """Shrink the rows whose L2 perturbation, measured in float64, exceeds eps by more than `slack`.

    Projecting in float32 and adding back to x rounds every pixel; over 150,000 pixels that
    overshoots the ball by up to ~1e-6, the evaluator's whole allowance. Offending rows are
    pulled inside by four times their overshoot, which rounding cannot undo.
    """
    for _ in range(4):
        norms = l2_norms((x_adv - x).double())
        over = norms > eps + slack
        if not over.any():
            break
        target = eps - 4 * (norms[over] - eps)
        scale = (target / norms[over]).to(x.dtype)
        x_adv = x_adv.clone()
        x_adv[over] = (x[over] + (x_adv[over] - x[over]) * per_row(scale, x)).clamp(0, 1)
    return x_adv


@dataclass
class Ascent:
    x_adv: torch.Tensor
    #: Index of the first misclassified iterate (0 = the start), steps + 1 where none was.
    fooled_at: torch.Tensor


def ascend(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: LossFn, *, eps: float, step: float,
           steps: int, norm: Norm = "linf", start: bool = True, decay: float | None = None) -> Ascent:
    """Maximise `loss` from a (random) start by `steps` projected steps; stop each example once fooled.

    `decay` switches on MIM's momentum. Iterate t is checked with the forward pass that
    also gives its gradient, so a run costs steps + 1 forwards and steps backwards at most.
    """
    x = x.detach()
    x_adv = random_start(x, eps, norm) if start else x.clone()
    fooled_at = torch.full((len(x),), steps + 1, dtype=torch.long, device=x.device)
    momentum = torch.zeros_like(x) if decay is not None else None
    active = torch.arange(len(x), device=x.device)
    for t in range(steps + 1):
        xa = x_adv[active]
        if t == steps:
            with torch.no_grad():
                hit = model(xa).argmax(1) != y[active]
            fooled_at[active[hit]] = t
            break
        xa.requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            (grad,) = torch.autograd.grad(loss(logits, y[active]).sum(), xa)
        hit = logits.detach().argmax(1) != y[active]
        fooled_at[active[hit]] = t
        keep = ~hit
        active, xa, grad = active[keep], xa.detach()[keep], grad[keep]
        if not len(active):
            break
        if momentum is not None:
            grad = grad / grad.abs().mean(dim=tuple(range(1, grad.dim())), keepdim=True)
            grad = grad + decay * momentum[active]
            momentum[active] = grad
        if norm == "linf":
            moved = xa + step * grad.sign()
        else:
            moved = xa + step * grad / per_row(l2_norms(grad) + 1e-10, grad)
        x_adv[active] = project(x[active], moved, eps, norm)
    if norm == "l2":
        x_adv = fit_l2(x, x_adv, eps)
    return Ascent(x_adv.detach(), fooled_at)
