"""A straightforward implementation of PGD-AT and OTJR training steps, the baseline `otjr bench` measures against.

What a first implementation would do: the attack calls `loss.backward()`, so every step
also computes (and zeroes) the weight gradients; the sliced Wasserstein distance loops
over the projections in Python; fp32, default memory layout, eager, torch.optim.SGD. It
computes the same function as the trainer's path (tests/test_speed.py checks it), so the
time difference is the implementation's alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import jacobian_penalty, random_projections
from ..core.pgd import Adversary

#: The methods the reference implements.
METHODS = ("pgd_at", "otjr")


def reference_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, adversary: Adversary) -> torch.Tensor:
    """L-inf PGD with a uniform random start, model in eval mode, gradients by `loss.backward()`."""
    was_training = model.training
    model.eval()
    eps = adversary.eps
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(adversary.steps):
        x_adv = x_adv.detach().requires_grad_(True)
        model.zero_grad()
        F.cross_entropy(model(x_adv), y, reduction="sum").backward()
        x_adv = x_adv + adversary.step * x_adv.grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    model.zero_grad()
    model.train(was_training)
    return x_adv.detach()


def reference_sliced_wasserstein(source: torch.Tensor, target: torch.Tensor, projections: torch.Tensor):
    """(distance, unit movement directions) of `source` towards `target`, one projection at a time."""
    batch = source.shape[0]
    total = source.new_zeros(())
    movement = torch.zeros_like(source)
    for k in range(projections.shape[1]):
        theta = projections[:, k]
        src, tgt = source @ theta, target @ theta
        rank = torch.empty(batch, dtype=torch.long, device=source.device)
        rank[torch.argsort(src)] = torch.arange(batch, device=source.device)
        move = torch.sort(tgt).values[rank] - src
        total = total + move.pow(2).mean()
        movement = movement + move.detach()[:, None] * theta[None, :]
    norm = movement.norm(dim=1, keepdim=True).clamp_min(torch.finfo(movement.dtype).tiny)
    return total / projections.shape[1], movement / norm


class ReferenceStep:
    """One PGD-AT or OTJR training step, the straightforward way."""

    def __init__(self, model: nn.Module, method: str, adversary: Adversary, lr: float, momentum: float,
                 weight_decay: float, otjr: dict | None = None):
        if method not in METHODS:
            raise ValueError(f"reference step: {method!r} is not one of {METHODS}")
        self.model, self.method, self.adversary, self.otjr = model, method, adversary, otjr or {}
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = reference_pgd(self.model, x, y, self.adversary)
        if self.method == "pgd_at":
            return F.cross_entropy(self.model(x_adv), y)
        p = self.otjr
        x_clean = x.clone().requires_grad_(True)
        clean = self.model(x_clean)
        adv = self.model(x_adv)
        theta = random_projections(clean.shape[1], p["num_projections"], device=x.device, dtype=clean.dtype)
        sw, directions = reference_sliced_wasserstein(adv, clean, theta)
        jac = jacobian_penalty(x_clean, clean, directions)
        return F.cross_entropy(adv, y) + p["lambda_j"] * jac + p["lambda_sw"] * sw

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.model.train()
        loss = self.loss(x, y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()
