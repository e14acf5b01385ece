"""Training batches kept on the device: shuffled per (seed, epoch), augmented there."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .augment import augment


@dataclass
class Batches:
    """Training images on the device as uint8; each epoch's order comes from (seed, epoch)."""

    images: torch.Tensor
    labels: torch.Tensor
    batch_size: int
    augment: str

    def __len__(self) -> int:
        return max(1, len(self.labels) // self.batch_size)  # drop the ragged tail (BN needs > 1 image)

    def epoch(self, seed: int, epoch: int):
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.labels), generator=g).to(self.images.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[idx].float().div_(255)
            yield augment(self.augment, x), self.labels[idx]
