"""Choosing the torch device from the `device` param."""

from __future__ import annotations

import torch

from .errors import UserError


def use_threads(n: int) -> None:
    """torch's CPU threads for this process: `n`, or torch's default for 0.

    CPU kernels split reductions by thread, so the result's last bits (and, after training,
    more) depend on the count: fixing it makes a run the same on any number of cores.
    """
    if n:
        torch.set_num_threads(n)


def resolve_device(name: str) -> torch.device:
    """'auto' is the GPU when there is one, else the CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device: {name!r} requested but no CUDA device is available")
    return device
