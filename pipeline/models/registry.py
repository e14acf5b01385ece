"""The model registry: architectures built from a name and keyword arguments."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core.errors import UserError
from ..core.registry import Registry
from .timm_zoo import is_timm, timm_builder

#: name -> builder(num_classes, in_channels, **args) -> nn.Module taking normalised inputs
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


class Normalize(nn.Module):
    """Per-channel standardisation inside the model, so attacks work on [0, 1] images."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """Normalisation followed by an architecture; takes images in [0, 1], returns logits."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def create(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    mean=None,
    std=None,
    **args,
) -> Classifier:
    """Build model `name` for `num_classes` classes, with normalisation by `mean`/`std` inside."""
    builder = timm_builder(name) if is_timm(name) else MODELS.get(name, key="model.name")
    mean = mean if mean is not None else [0.0] * in_channels
    std = std if std is not None else [1.0] * in_channels
    try:
        net = builder(num_classes=num_classes, in_channels=in_channels, **args)
    except TypeError as err:
        raise UserError(f"model.args: {name} does not accept these arguments ({err})") from None
    return Classifier(net, mean, std)
