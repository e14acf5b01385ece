"""Counting what an attack spends: image-forwards and image-backwards through the model.

The evaluator wraps the model once in `CountingModel`; every forward adds its batch size,
and every backward through the model's input adds the batch size again (an identity
autograd function at the input sees each backward pass, including the repeated
`backward(retain_graph=True)` calls of Jacobian-based attacks). A backward pass costs about
two forwards, so cost in forward-equivalents is forwards + 2 * backwards.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn


@dataclass
class Passes:
    forward: int = 0
    backward: int = 0

    @property
    def forward_equivalents(self) -> int:
        return self.forward + 2 * self.backward

    def __sub__(self, other: "Passes") -> "Passes":
        return Passes(self.forward - other.forward, self.backward - other.backward)

    def __add__(self, other: "Passes") -> "Passes":
        return Passes(self.forward + other.forward, self.backward + other.backward)

    def as_dict(self, n_images: int) -> dict[str, float]:
        """Totals, and forward-equivalents per test image (the benchmark's unit)."""
        per_image = self.forward_equivalents / n_images if n_images else 0.0
        return {"forward": self.forward, "backward": self.backward,
                "forward_equivalents": self.forward_equivalents, "per_image": round(per_image, 2)}


class _CountBackward(torch.autograd.Function):
    """Identity whose backward adds the batch size to a counter."""

    @staticmethod
    def forward(ctx, x, counter):
        ctx.counter = counter
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.counter.backward += grad.shape[0]
        return grad, None


class CountingModel(nn.Module):
    """`model` with a running count of the image-passes through it (see module docstring)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.passes = Passes()
        self.train(model.training)  # a fresh module says 'training'; restoring that would flip `model`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes.forward += x.shape[0]
        if x.requires_grad:
            x = _CountBackward.apply(x, self.passes)
        return self.model(x)


@contextlib.contextmanager
def isolated_rng(device: torch.device | str, seed: int | None = None) -> Iterator[None]:
    """Fork the global RNG (CPU and `device`), optionally seed it, and restore it on exit.

    torchattacks' APGD, FAB and Square call `torch.manual_seed` on every call; inside this
    block they cannot disturb the caller's random stream.
    """
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        yield
