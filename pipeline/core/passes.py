"""How the pipeline runs a model outside its training step: frozen, batch-statistics-only, batched inference.

Every layer above uses these: the trainer's adversary and monitor, the methods and add-ons,
the evaluation suite, the sanity checks and the analyses.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
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


def batched_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """`model(x)` computed `batch_size` rows at a time without gradients, in the model's current mode."""
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted classes of `x`, `batch_size` rows at a time, in the model's current mode."""
    return batched_logits(model, x, batch_size).argmax(1)
