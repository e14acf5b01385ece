"""Projected gradient ascent: the one PGD loop of the trainer, the analyses and the evaluation suite.

One loop serves every first-order iterative attack: L-inf PGD (Madry et al.: signed
gradient steps), L2 PGD (normalised gradient steps), and MIM (Dong et al.: momentum over
L1-normalised gradients), written to match torchattacks' PGD, PGDL2 and MIFGSM step for step
(tests/test_attacks_reference.py checks this). Given labels, an example leaves the batch at
its first misclassified iterate, which is returned (the evaluation suite: a fooled example
costs no further passes, and the attack is never weaker than running on); without them
every example takes every step (the training adversary and the analyses).

The L-inf projection is kept in two roundings, one per caller family, because the committed
results depend on each bit for bit: the suite clips the displacement (x + clamp(x_adv - x),
torchattacks' order), the trainer and the analyses clip x_adv to the box [x - eps, x + eps].
They are the same projection and differ only in float rounding; unifying them changes the
trained weights, so it belongs with a refresh of the committed results.

`Adversary` is the training budget the methods attack with (`pgd_linf` with its settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .passes import frozen

Norm = Literal["linf", "l2"]
#: The ball's projection rounding: clip the displacement (the suite's) or clip to the box (the trainer's).
Clip = Literal["displacement", "box"]
#: What the loop ascends: (logits, rows) -> scalar, `rows` indexing the examples still in the batch.
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
START_KINDS = ("uniform", "gaussian")


def per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (batch,) tensor shaped to broadcast over a batch of images like `like`."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def l2_norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def start_point(x: torch.Tensor, eps: float, kind: str = "uniform", std: float = 0.001, norm: Norm = "linf",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD's random start: x plus noise, inside the eps-ball and [0, 1].

    L-inf, uniform: each pixel moves by U(-eps, eps) (Madry et al.). L-inf, gaussian: by
    std * N(0, 1), clipped to the ball, as the TRADES and OTJR training code start (std 0.001
    there; that code does not clip the start, which only matters for pixels at 0 or 1). L2: a
    random direction at a radius uniform in [0, eps] (`kind` is not used). Draws come from
    `generator`, else the global random stream.
    """
    if norm == "l2":
        delta = torch.empty_like(x).normal_(generator=generator)
        n = per_row(l2_norms(delta), x)
        r = torch.zeros_like(n).uniform_(0, 1, generator=generator)
        return (x + delta * r / n * eps).clamp(0, 1)
    if kind == "uniform":
        noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    elif kind == "gaussian":
        noise = torch.empty_like(x).normal_(generator=generator).mul_(std).clamp_(-eps, eps)
    else:
        raise ValueError(f"unknown random start {kind!r}; choose from: {', '.join(START_KINDS)}")
    return (x + noise).clamp_(0, 1)


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: Norm, clip: Clip = "displacement") -> torch.Tensor:
    """Nearest point of the eps-ball around x (then of the [0, 1] box) on the attack's path."""
    if norm == "linf" and clip == "box":
        return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0, 1)
    delta = x_adv - x
    if norm == "linf":
        return (x + delta.clamp(-eps, eps)).clamp(0, 1)
    factor = torch.clamp(eps / l2_norms(delta), max=1.0)
    return (x + delta * per_row(factor, x)).clamp(0, 1)


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
    #: Index of the first misclassified iterate (0 = the start), steps + 1 where none was (or no labels were given).
    fooled_at: torch.Tensor


def ascend(model: nn.Module, x: torch.Tensor, objective: Objective, *, eps: float, step: float, steps: int,
           norm: Norm = "linf", start: str | None = "uniform", start_std: float = 0.001, decay: float | None = None,
           labels: torch.Tensor | None = None, clip: Clip = "displacement",
           generator: torch.Generator | None = None) -> Ascent:
    """Maximise `objective` from a start (`start_point` of kind `start`, or x itself when None) by `steps` projected steps.

    With `labels`, each example stops once misclassified: iterate t is checked with the
    forward pass that also gives its gradient, so a run costs steps + 1 forwards and steps
    backwards at most. `decay` switches on MIM's momentum. The caller puts the model in the
    mode it attacks in (`frozen`). Returns detached examples.
    """
    stops = labels is not None
    x = x.detach()
    x_adv = start_point(x, eps, start, start_std, norm, generator) if start else x.clone()
    fooled_at = torch.full((len(x),), steps + 1, dtype=torch.long, device=x.device)
    momentum = torch.zeros_like(x) if decay is not None else None
    active = torch.arange(len(x), device=x.device)
    for t in range(steps + 1):
        xa = x_adv[active] if stops else x_adv
        if t == steps:
            if stops:  # the last iterate's check: one forward, no gradient
                with torch.no_grad():
                    hit = model(xa).argmax(1) != labels[active]
                fooled_at[active[hit]] = t
            break
        xa.requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            (grad,) = torch.autograd.grad(objective(logits, active), xa)
        xa = xa.detach()
        if stops:
            hit = logits.detach().argmax(1) != labels[active]
            fooled_at[active[hit]] = t
            keep = ~hit
            active, xa, grad = active[keep], xa[keep], grad[keep]
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
        if stops:
            x_adv[active] = project(x[active], moved, eps, norm, clip)
        else:
            x_adv = project(x, moved, eps, norm, clip)
    if norm == "l2":
        x_adv = fit_l2(x, x_adv, eps)
    return Ascent(x_adv.detach(), fooled_at)


def pgd_linf(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    eps: float,
    step: float,
    steps: int,
    random_start: bool = True,
    start: str = "uniform",
    start_std: float = 0.001,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L-inf PGD on `loss_fn(model(x_adv))` with the model frozen, every example taking every step.

    `loss_fn` maps logits to a scalar; it should sum (not average) over the batch so each
    example's step does not depend on the batch size. The start is `start_point(x, eps,
    start, start_std)`, or x itself when `random_start` is false. Returns a detached tensor.
    """
    with frozen(model):
        return ascend(model, x, lambda logits, _rows: loss_fn(logits), eps=eps, step=step, steps=steps,
                      start=start if random_start else None, start_std=start_std, clip="box",
                      generator=generator).x_adv


@dataclass(frozen=True)
class Adversary:
    """The training adversary: PGD with the training budget; `perturb` maximises CE, `perturb_loss` any logits loss."""

    eps: float
    step: float
    steps: int
    start: str = "uniform"  # random start: uniform in the ball, or gaussian with std start_std
    start_std: float = 0.001

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb_loss(model, x, lambda logits: F.cross_entropy(logits, y, reduction="sum"))

    def perturb_loss(self, model: nn.Module, x: torch.Tensor, loss_fn) -> torch.Tensor:
        return pgd_linf(model, x, loss_fn, self.eps, self.step, self.steps, start=self.start, start_std=self.start_std)
