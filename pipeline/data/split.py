"""Deterministic stratified splits (same indices on every machine for a given seed)."""

from __future__ import annotations

import torch


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held_out): `fraction` of each class held out, both sorted ascending."""
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        held.append(idx[: int(round(fraction * len(idx)))])
    held_out = torch.sort(torch.cat(held)).values if held else torch.empty(0, dtype=torch.long)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_out] = False
    return torch.nonzero(mask).flatten(), held_out
