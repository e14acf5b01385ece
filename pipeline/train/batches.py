"""Training batches: kept on the device when the split fits, else streamed by worker processes.

Both feeders draw the same order from (seed, epoch), cut it into the same batches (the
ragged tail dropped), turn uint8 into [0, 1] floats on the device and augment there with
the same function, so a run gives the same batches whichever feeds it. The streaming
feeder reads rows from the memory-mapped shards in worker processes, pins them and
copies them to the device asynchronously; the on-device one never leaves the device.
Under torchrun each process gets its shard of every batch (`Ranks.shard`): the same
global batches as one process, split between the processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..data.shards import SplitReader
from .augment import augment
from .distributed import SINGLE, Ranks

#: Share of the device's free memory (or of the host's available memory, on CPU) the
#: training split may take and still be kept on the device under `data.loader: auto`.
DEVICE_SHARE = 0.4


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the training rows used in 0-based `epoch` (CPU generator: same on every device)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g, device="cpu")


def num_batches(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)  # drop the ragged tail (BN needs > 1 image)


@dataclass
class Batches:
    """Training images on the device as uint8; each epoch's order comes from (seed, epoch)."""

    images: torch.Tensor
    labels: torch.Tensor
    batch_size: int
    augment: str
    ranks: Ranks = SINGLE

    def __len__(self) -> int:
        return num_batches(len(self.labels), self.batch_size)

    def epoch(self, seed: int, epoch: int):
        order = epoch_order(len(self.labels), seed, epoch).to(self.images.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size][self.ranks.shard(self.batch_size)]
            x = self.images[idx].float().div_(255)
            yield augment(self.augment, x), self.labels[idx]


class _Rows(torch.utils.data.Dataset):
    """Dataset whose items are whole batches: a list of row indices -> (uint8 images, labels)."""

    def __init__(self, reader: SplitReader):
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, rows):
        rows = torch.as_tensor(rows, device="cpu")
        return self.reader.rows(rows), self.reader.labels[rows]


class _EpochBatches(torch.utils.data.Sampler):
    """Yields each batch's row indices for the epoch set last (read in the main process)."""

    def __init__(self, n: int, batch_size: int, ranks: Ranks = SINGLE):
        self.n, self.batch_size, self.ranks = n, batch_size, ranks
        self.order = torch.arange(n, device="cpu")  # read by the main process

    def __len__(self) -> int:
        return num_batches(self.n, self.batch_size)

    def __iter__(self):
        for i in range(len(self)):
            yield self.order[i * self.batch_size : (i + 1) * self.batch_size][self.ranks.shard(self.batch_size)].tolist()


class StreamingBatches:
    """Training batches read from the prepared shards by `workers` processes, then sent to `device`."""

    def __init__(self, reader: SplitReader, batch_size: int, augment: str, device: torch.device, workers: int,
                 ranks: Ranks = SINGLE):
        self.reader, self.batch_size, self.augment, self.device = reader, batch_size, augment, torch.device(device)
        self.sampler = _EpochBatches(len(reader), batch_size, ranks)
        self.loader = torch.utils.data.DataLoader(
            _Rows(reader),
            sampler=self.sampler,
            batch_size=None,  # the sampler already yields whole batches
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            generator=torch.Generator(),  # else each epoch's iterator draws a seed from the global RNG,
        )  # shifting the augmentation's random numbers away from the on-device feeder's

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, seed: int, epoch: int):
        self.sampler.order = epoch_order(len(self.reader), seed, epoch)
        for images, labels in self.loader:
            x = images.to(self.device, non_blocking=True).float().div_(255)
            yield augment(self.augment, x), labels.to(self.device, non_blocking=True)


def available_bytes(device: torch.device) -> int:
    """Free memory on `device` (host memory available to this process on CPU)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62


def training_batches(
    dataset: str, device: torch.device, batch_size: int, augment: str, loader: str, workers: int,
    ranks: Ranks = SINGLE,
) -> Batches | StreamingBatches:
    """The feeder `data.loader` asks for; under 'auto' on the device if the split takes <= DEVICE_SHARE of its free memory."""
    reader = SplitReader(dataset, "train")
    on_device = loader == "device" or (loader == "auto" and reader.nbytes <= DEVICE_SHARE * available_bytes(device))
    if on_device:
        images, labels = reader.head()
        return Batches(images.to(device), labels.to(device), batch_size, augment, ranks)
    return StreamingBatches(reader, batch_size, augment, device, workers, ranks)
