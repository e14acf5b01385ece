"""Per-epoch monitoring: clean and PGD accuracy on held-out images."""

from __future__ import annotations

import torch
from torch import nn

from ..core.passes import predict
from ..core.pgd import Adversary


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Top-1 accuracy in percent (eval mode, no grad)."""
    if len(y) == 0:
        return float("nan")
    was = model.training
    model.eval()
    correct = int((predict(model, x, batch_size) == y).sum())
    model.train(was)
    return 100.0 * correct / len(y)


def robust_accuracy(model: nn.Module, adversary: Adversary, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    if len(y) == 0:
        return float("nan")
    chunks = [adversary.perturb(model, x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
    return accuracy(model, torch.cat(chunks), y, batch_size)
