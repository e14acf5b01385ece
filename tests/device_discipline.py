"""A CPU stand-in for "model and data on the GPU, a stray tensor on the CPU" (the classic GPU-only bug).

`misplaced_factories()` sends every tensor factory call (`torch.zeros`, `torch.arange`,
`torch.tensor`, ...) that code in the `pipeline` package makes without `device=` to torch's
`meta` device, while the model and data stay on the CPU. On a GPU such a call lands on the
CPU next to CUDA tensors; here it lands on `meta` next to CPU tensors, and the first
operation mixing the two raises (as on a GPU), as does reading its values. Factory calls
from torch and other libraries keep the CPU default: torchattacks, for one, builds tensors
on the CPU and moves them with `.to(device)`, which is correct on a GPU. `*_like` and
`Tensor.new_*` calls inherit their device and are never touched, as on a GPU; nor are the
calls in an `nn.Module`'s `__init__` (parameters and buffers are made on the CPU and moved
with the module).
"""

from __future__ import annotations

import contextlib
import sys

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors


def _called_from_pipeline() -> bool:
    """Whether the factory call being dispatched was written in the pipeline package, outside a module's __init__."""
    frame = sys._getframe(2)  # 0: this function, 1: __torch_function__, 2: the factory's caller
    name = frame.f_globals.get("__name__", "")
    if not (name == "pipeline" or name.startswith("pipeline.")):
        return False
    # parameters and buffers are built on the CPU by design and moved with the module (`.to(device)`)
    return not (frame.f_code.co_name == "__init__" and isinstance(frame.f_locals.get("self"), torch.nn.Module))


class _MisplacedFactories(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _device_constructors() and kwargs.get("device") is None and _called_from_pipeline():
            kwargs["device"] = torch.device("meta")
        return func(*args, **kwargs)


@contextlib.contextmanager
def misplaced_factories():
    """Within the block, factory calls of pipeline code without `device=` create `meta` tensors."""
    with _MisplacedFactories():
        yield
