"""A CNN that halves the image twice in its first two convolutions: ~3x cheaper than `small_cnn` on 28x28.

Made for the Fashion-MNIST CPU tier (presets/fashion-mnist.yaml), where every training runs
PGD on full-size 28x28 images and `small_cnn`'s two full-resolution blocks dominate the cost.
"""

from __future__ import annotations

from torch import nn

from .registry import MODELS


@MODELS.register("strided_cnn")
def strided_cnn(num_classes: int, in_channels: int = 1, width: int = 16, hidden: int = 64) -> nn.Module:
    """Conv 5x5 stride 2 (width), conv 3x3 stride 2 (2*width), conv 3x3 (2*width), each with BN and ReLU;
    pooled to 7x7 (a no-op on 28x28 images), then a hidden linear layer and the head."""
    w = width

    def block(cin: int, cout: int, k: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(in_channels, w, 5, 2),
        *block(w, 2 * w, 3, 2),
        *block(2 * w, 2 * w, 3, 1),
        nn.AdaptiveAvgPool2d(7),
        nn.Flatten(),
        nn.Linear(2 * w * 49, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )
