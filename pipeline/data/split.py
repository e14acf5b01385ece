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


def stratified_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Positions (into `labels`) of a fixed, class-stratified subset of exactly `n`, sorted ascending.

    Each class gets its share of `n` by largest remainder (ties: lower class first), drawn from
    one permutation of that class per `seed`, so the subset depends only on the labels, `n` and `seed`.
    """
    if not 0 < n <= len(labels):
        raise ValueError(f"subset of {n} from {len(labels)} labels")
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n / len(labels)
    quota = exact.floor().long()
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - quota[i]).item(), i))
    for i in order[: n - int(quota.sum())]:
        quota[i] += 1
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        idx = torch.nonzero(labels == c).flatten()
        picked.append(idx[torch.randperm(len(idx), generator=g)][:q])
    return torch.sort(torch.cat(picked)).values
