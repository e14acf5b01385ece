"""The dataset registry: how each dataset is fetched and read into uint8 arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch

from ..core.registry import Registry


@dataclass(frozen=True)
class RawSplits:
    """A dataset as published: uint8 images (N, C, H, W) and int64 labels per split, plus provenance."""

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    classes: list[str]
    sources: dict[str, str]  # file name -> sha256, recorded in the prepared files


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    channels: int
    augment: Literal["none", "crop_flip"]
    #: Fetch the published files into the given directory (idempotent; verifies checksums).
    download: Callable[[Path], None]
    #: Read the downloaded files into uint8 splits ('train' and 'test').
    read: Callable[[Path], RawSplits]
    description: str = ""


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name)(spec)
