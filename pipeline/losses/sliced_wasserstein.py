"""Sliced Wasserstein distance between adversarial and clean logits (paper Eq. 9-11).

Projected samples are sorted on each slice; the r-th smallest adversarial projection is
paired with the r-th smallest clean one. The distance is the mean over slices and samples
of the squared 1-D displacement; the displacements, mapped back through the slices, give
each adversarial sample's optimal movement direction.
"""

from __future__ import annotations

import torch


def random_projections(dim: int, k: int, device=None, dtype=torch.float32, generator=None) -> torch.Tensor:
    """`k` directions uniform on the unit sphere S^(dim-1), as the columns of a (dim, k) matrix."""
    theta = torch.randn(dim, k, device=device, dtype=dtype, generator=generator)
    return theta / theta.norm(dim=0, keepdim=True)


def sliced_wasserstein(
    source: torch.Tensor, target: torch.Tensor, projections: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, directions) between `source` (B, C) adversarial and `target` (B, C) clean logits.

    `projections` is (C, K) with unit columns. `distance` is a scalar through which gradients
    reach both inputs; `directions` (B, C) are the detached, unit-normalised movements of the
    source samples (a zero movement stays a zero row).
    """
    src = source @ projections  # (B, K)
    tgt = target @ projections
    tgt_sorted = torch.sort(tgt, dim=0).values
    src_rank = torch.argsort(torch.argsort(src, dim=0), dim=0)
    matched = torch.gather(tgt_sorted, 0, src_rank)  # clean value paired with each source sample
    move = matched - src  # (B, K): displacement of each source sample along each slice
    distance = move.pow(2).mean()
    with torch.no_grad():
        directions = move @ projections.T  # (B, C): sum_k d_ik theta_k
        norm = directions.norm(dim=1, keepdim=True)
        directions = directions / norm.clamp_min(torch.finfo(directions.dtype).tiny)
    return distance, directions.detach()
