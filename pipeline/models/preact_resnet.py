"""PreActResNet18 (He et al. 2016, identity mappings) with a width knob."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .registry import MODELS


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    def __init__(self, blocks: list[int], num_classes: int, in_channels: int, width: int, imagenet_stem: bool):
        super().__init__()
        if imagenet_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        else:
            self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            for j in range(n):
                layers.append(PreActBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = self.layers(self.stem(x))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


BLOCKS = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


@MODELS.register("preact_resnet18")
def preact_resnet18(
    num_classes: int, in_channels: int = 3, width: int = 64, imagenet_stem: bool = False, depth: int = 18
) -> nn.Module:
    """PreActResNet18 (11.17 M parameters for 10 classes); `width` is the first stage's channels (64 in the paper)."""
    if depth not in BLOCKS:
        raise TypeError(f"depth must be one of {sorted(BLOCKS)}, got {depth}")
    return PreActResNet(BLOCKS[depth], num_classes, in_channels, width, imagenet_stem)
