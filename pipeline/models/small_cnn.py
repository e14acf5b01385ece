"""A small CNN, fast on a CPU: the embedded default's model."""

from __future__ import annotations

from torch import nn

from .registry import MODELS


@MODELS.register("small_cnn")
def small_cnn(num_classes: int, in_channels: int = 1, width: int = 32) -> nn.Module:
    """Three conv blocks (width, 2*width, 2*width) with BN, then global pooling and a linear head."""
    w = width

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(in_channels, w, 1),
        *block(w, 2 * w, 2),
        *block(2 * w, 2 * w, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * w, num_classes),
    )
