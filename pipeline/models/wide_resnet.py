"""WideResNet (Zagoruyko & Komodakis 2016) as used by TRADES and the OTJR paper.

Pre-activation basic blocks; widths 16, 16k, 32k, 64k; (depth - 4) / 6 blocks per group.
When a block changes width or stride, its BN-ReLU output feeds both the residual branch
and the 1x1 projection shortcut. `wrn34_10` and `wrn28_10` are the paper's networks;
`depth` and `widen` shrink them for tests.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .registry import MODELS


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, drop: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.drop = drop
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if (cin != cout or stride != 1) else None

    def forward(self, x):
        act = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(act)
        out = F.relu(self.bn2(self.conv1(act)))
        if self.drop:
            out = F.dropout(out, p=self.drop, training=self.training)
        return self.conv2(out) + skip


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int, drop: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise TypeError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks, cin = [], widths[0]
        for group, stride in zip(range(1, 4), (1, 2, 2)):
            for i in range(n):
                blocks.append(WideBlock(cin, widths[group], stride if i == 0 else 1, drop))
                cin = widths[group]
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@MODELS.register("wrn34_10")
def wrn34_10(num_classes: int, in_channels: int = 3, depth: int = 34, widen: int = 10, drop: float = 0.0) -> nn.Module:
    """WRN-34-10 (46.16 M parameters for 10 classes): the paper's main CIFAR network."""
    return WideResNet(depth, widen, num_classes, in_channels, drop)


@MODELS.register("wrn28_10")
def wrn28_10(num_classes: int, in_channels: int = 3, depth: int = 28, widen: int = 10, drop: float = 0.0) -> nn.Module:
    """WRN-28-10 (36.48 M parameters for 10 classes): paper Table 9."""
    return WideResNet(depth, widen, num_classes, in_channels, drop)
