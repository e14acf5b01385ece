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
    return flip(padded[idx_n, idx_c, rows, cols], generator)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image counter-clockwise by its angle about the centre, nearest pixel, zero fill.

    torchvision's `rotate(img, angle)` on tensors (interpolation NEAREST, expand False), batched.
    """
    n, _, h, w = x.shape
    rad = torch.deg2rad(degrees.to(torch.float32))
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    # output pixel -> input pixel in normalised coordinates; the aspect terms keep the rotation rigid
    theta = torch.stack([torch.stack([cos, -sin * h / w, zero], 1), torch.stack([sin * w / h, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.device), [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="nearest", padding_mode="zeros", align_corners=False)


def flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    mirrored = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(mirrored[:, None, None, None], x.flip(3), x)


def rotate_flip(x: torch.Tensor, max_degrees: float = 12.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The OTJR authors' Intel augmentation: RandomRotation(12) then RandomHorizontalFlip, per image."""
    angles = (torch.rand(x.shape[0], device=x.device, generator=generator) * 2 - 1) * max_degrees
    return flip(rotate(x, angles), generator)


AUGMENTATIONS = ("none", "crop_flip", "rotate_flip")


def augment(kind: str, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    if kind == "none":
        return x
    if kind == "crop_flip":
        return crop_flip(x, generator=generator)
    if kind == "rotate_flip":
        return rotate_flip(x, generator=generator)
    raise ValueError(f"unknown augmentation {kind!r}; choose from: {', '.join(AUGMENTATIONS)}")
