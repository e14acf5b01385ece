"""The trainer's speed options (`speed:` in params.yaml), applied to the model as the step calls it.

Each option is off by default (the fp32 eager reference path); none changes the maths:

- `precision: bf16`: the forward passes of training and of its attack run under bf16
  autocast; the logits come out in fp32, so perturbations, projections and losses stay
  fp32 (islands outside autocast). Works on CUDA and on CPUs (fast with AVX512-BF16/AMX).
- `channels_last`: weights and inputs in NHWC memory layout (tensor cores, oneDNN).
- `cudnn_benchmark`: cuDNN picks the fastest convolution algorithms (CUDA only, else ignored).
- `compile`: `torch.compile` of the model's forward. Double backward does not go through
  compiled graphs, so an objective with the exact Jacobian penalty stays eager
  (`Forward.eager`); its attack, and every pass of the finite-difference form, are compiled.

`Forward` is the wrapper the methods receive in place of the model: an `nn.Module` over the
same parameters, so `frozen`, `train()` and `eval()` act on the real model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..params import SpeedParams


@dataclass(frozen=True)
class Speed:
    """The speed options resolved for one device."""

    device_type: str
    autocast: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False

    @property
    def active(self) -> bool:
        return self.autocast is not None or self.channels_last or self.compile


def resolve(params: SpeedParams, device: torch.device) -> Speed:
    """The options that apply on `device`; sets cuDNN autotuning as a side effect (CUDA only)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = params.cudnn_benchmark
    return Speed(
        device_type=device.type,
        autocast=torch.bfloat16 if params.precision == "bf16" else None,
        channels_last=params.channels_last,
        compile=params.compile,
    )


def prepare(model: nn.Module, speed: Speed | None) -> nn.Module:
    """Put the weights in the memory layout the options want (in place; call before building optimizers)."""
    if speed is not None and speed.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


class Forward(nn.Module):
    """`module` as the training step calls it: channels_last inputs, forward under autocast, fp32 logits.

    `eager` is the same without torch.compile (for double backward), `full_precision` the
    same without autocast (for finite differences); both share this module's parameters.
    """

    def __init__(self, module: nn.Module, speed: Speed, compiled=None):
        super().__init__()
        self.module = module
        self.speed = speed
        # a plain attribute, not a submodule: the compiled wrapper holds the same parameters
        object.__setattr__(self, "_compiled", compiled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.speed.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        run = self._compiled if self._compiled is not None else self.module
        if self.speed.autocast is None:
            return run(x)
        with torch.autocast(self.speed.device_type, dtype=self.speed.autocast):
            out = run(x)
        return out.float()

    @property
    def eager(self) -> "Forward":
        if self._compiled is None:
            return self
        return Forward(self.module, self.speed)

    @property
    def full_precision(self) -> "Forward":
        if self.speed.autocast is None:
            return self
        return Forward(self.module, replace(self.speed, autocast=None), self._compiled)


def forward_of(module: nn.Module, speed: Speed | None) -> nn.Module:
    """What the methods call in place of `module`: `module` itself when no option is on (the reference path)."""
    if speed is None or not speed.active:
        return module
    compiled = torch.compile(module, dynamic=False) if speed.compile else None
    return Forward(module, speed, compiled)
