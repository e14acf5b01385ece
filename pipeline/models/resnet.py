"""ResNet-50 (He et al. 2016; bottleneck blocks, stride on the 3x3 convolution as torchvision's v1.5).

`imagenet_stem` picks the 7x7 stride-2 convolution and max-pool for large inputs; without
it the stem is one 3x3 stride-1 convolution, the usual choice for 32x32 images. `width`
is the first stage's bottleneck width (64; the block outputs are 4x that) and `depth`
picks the blocks per stage, both to shrink the network for tests. Parameter and buffer
names follow torchvision's, so its weights load as they are.
"""

from __future__ import annotations

from torch import nn

from .registry import MODELS

BLOCKS = {14: [1, 1, 1, 1], 26: [2, 2, 2, 2], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, blocks: list[int], num_classes: int, in_channels: int, width: int, imagenet_stem: bool):
        super().__init__()
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        cin = width
        for i, n in enumerate(blocks):
            planes = width * 2**i
            layer = []
            for j in range(n):
                layer.append(Bottleneck(cin, planes, 2 if (j == 0 and i > 0) else 1))
                cin = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.avgpool(x).flatten(1))


@MODELS.register("resnet50")
def resnet50(num_classes: int, in_channels: int = 3, depth: int = 50, width: int = 64, imagenet_stem: bool = False) -> nn.Module:
    """ResNet-50 (23.5 M parameters for 10 classes); `imagenet_stem` for inputs of about 64 pixels and more."""
    if depth not in BLOCKS:
        raise TypeError(f"depth must be one of {sorted(BLOCKS)}, got {depth}")
    return ResNet(BLOCKS[depth], num_classes, in_channels, width, imagenet_stem)
