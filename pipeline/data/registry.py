"""The dataset registry: how each dataset is fetched and read into uint8 arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from ..core.registry import Registry


@dataclass(frozen=True)
class RawSplits:
    """A dataset as published: per split, (uint8 images (N, C, H, W), int64 labels) or a lazy
    `images.TensorSplit` / `images.FileSplit`; plus class names and provenance."""

    splits: dict[str, tuple[torch.Tensor, torch.Tensor] | Any]
    classes: list[str]
    sources: dict[str, str]  # file name -> sha256, recorded in the prepared files


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    channels: int
    augment: Literal["none", "crop_flip"]
    #: Fetch the published files into the given directory (verifies checksums); the second
    #: argument is the user-supplied source path (data.sources / $OTJR_<NAME>_SOURCE) or None.
    download: Callable[[Path, Path | None], None]
    #: Read the downloaded files into uint8 splits ('train' and 'test').
    read: Callable[[Path], RawSplits]
    description: str = ""
    #: Whether data.sources.<name> may name a local copy (required when the data cannot be fetched).
    takes_source: bool = False


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name)(spec)
