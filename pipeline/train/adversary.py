"""The L-inf PGD adversary used during training (Madry et al.; paper Eq. 17).

While attacking, the model is in eval mode and its parameters are frozen, so only input
gradients are computed (no weight gradients, no BN statistics updates).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with parameters frozen; both restored on exit."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@contextlib.contextmanager
def batch_statistics_only(model: nn.Module) -> Iterator[nn.Module]:
    """Norm layers leave their running statistics alone: train-mode passes inside do not count.

    A train-mode batch-norm normalises with the batch's statistics either way; with
    `track_running_stats` off it just skips the update (so its saved tensors stay valid for
    a backward pass that comes later). Eval mode is unaffected.
    """
    layers = [m for m in model.modules()
              if getattr(m, "track_running_stats", False) and getattr(m, "running_mean", None) is not None]
    for m in layers:
        m.track_running_stats = False
    try:
        yield model
    finally:
        for m in layers:
            m.track_running_stats = True


START_KINDS = ("uniform", "gaussian")


def start_point(x: torch.Tensor, eps: float, kind: str = "uniform", std: float = 0.001) -> torch.Tensor:
    """PGD's starting point: x plus noise, inside the eps-ball and [0, 1].

    uniform: each pixel moves by U(-eps, eps) (Madry et al.). gaussian: by std * N(0, 1),
    clipped to the ball, as the TRADES and OTJR training code start (std 0.001 there; that
    code does not clip the start, which only matters for pixels at 0 or 1).
    """
    if kind == "uniform":
        noise = torch.empty_like(x).uniform_(-eps, eps)
    elif kind == "gaussian":
        noise = torch.randn_like(x).mul_(std).clamp_(-eps, eps)
    else:
        raise ValueError(f"unknown random start {kind!r}; choose from: {', '.join(START_KINDS)}")
    return (x + noise).clamp_(0, 1)


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
) -> torch.Tensor:
    """Ascend `loss_fn(model(x_adv))` by signed gradient steps inside the eps-ball and [0, 1].

    `loss_fn` maps logits to a scalar; it should sum (not average) over the batch so each
    example's step does not depend on the batch size. The start is `start_point(x, eps,
    start, start_std)`, or x itself when `random_start` is false. Returns a detached tensor.
    """
    with frozen(model):
        x = x.detach()
        x_adv = start_point(x, eps, start, start_std) if random_start else x.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = loss_fn(model(x_adv))
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + step * grad.sign()
            x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0, 1)
    return x_adv.detach()


@dataclass(frozen=True)
class Adversary:
    """PGD with the training budget; `perturb` maximises CE, `perturb_loss` any logits loss."""

    eps: float
    step: float
    steps: int
    start: str = "uniform"  # random start: uniform in the ball, or gaussian with std start_std
    start_std: float = 0.001

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb_loss(model, x, lambda logits: F.cross_entropy(logits, y, reduction="sum"))

    def perturb_loss(self, model: nn.Module, x: torch.Tensor, loss_fn) -> torch.Tensor:
        return pgd_linf(model, x, loss_fn, self.eps, self.step, self.steps, start=self.start, start_std=self.start_std)
