"""How a model starts training: its input normalisation, its weight init, pretrained weights.

`model.normalize` decides what the checkpoint's Normalize layer holds: the training split's
per-channel mean and std, or 0 and 1 (then (x - 0) / 1 is x exactly, the raw [0, 1] input
the OTJR authors and TRADES feed their networks; checkpoints keep one layout either way).
`model.init` picks the weight init: `default` leaves each architecture's own (PyTorch's
layer defaults; ResNet-50 uses torchvision's He fan-out convolutions), `he_fan_out` is
TRADES' WideResNet init: convolution weights N(0, 2 / (k*k*out_channels)), batch-norm
weight 1 and bias 0, linear bias 0. `model.pretrained` then loads ImageNet weights
(pipeline/models/pretrained.py), which replace every initialised tensor but the head.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from .checkpoint import build, model_spec
from .pretrained import load_pretrained

INIT_SCHEMES = ("default", "he_fan_out")


def he_fan_out(model: nn.Module) -> nn.Module:
    """TRADES' WideResNet init, applied to every layer of `model` (in place)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


def initialise(model: nn.Module, scheme: str) -> nn.Module:
    """Apply init `scheme`; `default` keeps the weights as built (and draws no random numbers)."""
    if scheme == "default":
        return model
    if scheme == "he_fan_out":
        return he_fan_out(model)
    raise ValueError(f"unknown init {scheme!r}; choose from: {', '.join(INIT_SCHEMES)}")


def training_spec(model_params, meta: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's model description for a prepared dataset: normalisation per `model.normalize`."""
    channels = meta["shape"][0]
    mean, std = (meta["mean"], meta["std"]) if model_params.normalize else ([0.0] * channels, [1.0] * channels)
    return model_spec(model_params.name, model_params.args, meta["num_classes"], channels, mean, std)


def initial_model(spec: dict[str, Any], model_params) -> nn.Module:
    """A new model of `spec` with its starting weights: built, initialised, pretrained weights loaded."""
    model = initialise(build(spec), model_params.init)
    if model_params.pretrained is not None:
        load_pretrained(model, spec["name"], model_params.pretrained)
    return model

