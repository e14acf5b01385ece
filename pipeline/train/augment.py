"""Augmentations applied on the device, batch-wise (no CPU data loader in the hot loop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop after zero padding by `pad`, and random horizontal flip, per image."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])[:, None, None, :]
    idx_n = torch.arange(n, device=dev)[:, None, None, None]
    idx_c = torch.arange(x.shape[1], device=dev)[None, :, None, None]
    out = padded[idx_n, idx_c, rows, cols]
    flip = torch.rand(n, device=dev, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def augment(kind: str, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    if kind == "none":
        return x
    if kind == "crop_flip":
        return crop_flip(x, generator=generator)
    raise ValueError(f"unknown augmentation {kind!r}")
