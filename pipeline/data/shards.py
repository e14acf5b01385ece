"""Reading prepared splits: safetensors shards opened as read-only memory maps.

A prepared split is one or more safetensors files (`paths.prepared_shard`), each holding
`images` (uint8 N, C, H, W) and `labels` (int64 N) plus our metadata. Images are memory
mapped, so a caller that wants a few rows (the first n test images, one training batch
of a split too big for the device) reads only those pages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import paths
from ..core.errors import UserError
from ..core.io import META_KEY

FORMAT = "otjr-prepared-1"
_DTYPES = {"U8": np.uint8, "I64": np.int64}


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors JSON header of `path` and the offset where tensor data starts."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 * 2**20:
                raise ValueError("header too large")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as err:
        raise UserError(f"{path}: not a readable safetensors prepared split ({err})") from None
    return header, 8 + n


def shard_metadata(path: Path, dataset: str) -> dict[str, Any]:
    """Our metadata of one shard ({'meta': ..., 'split': ...}); a missing or foreign file is one clear line."""
    if not path.is_file():
        raise UserError(f"{path}: prepared split not found; run `otjr stage preprocess --dataset {dataset}` (or dvc repro)")
    header, _ = read_header(path)
    try:
        metadata = json.loads((header.get("__metadata__") or {}).get(META_KEY, "{}"))
    except ValueError:
        metadata = {}
    meta = metadata.get("meta") if isinstance(metadata, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a prepared split written by this pipeline")
    return metadata


def _array(path: Path, header: dict, start: int, key: str) -> np.ndarray:
    entry = header.get(key)
    if not isinstance(entry, dict) or entry.get("dtype") not in _DTYPES:
        raise UserError(f"{path}: no {key!r} tensor of the expected type")
    begin, end = entry["data_offsets"]
    shape = tuple(entry["shape"])
    if end == begin:
        return np.empty(shape, dtype=_DTYPES[entry["dtype"]])
    return np.memmap(path, dtype=_DTYPES[entry["dtype"]], mode="r", offset=start + begin, shape=shape)


class SplitReader:
    """All shards of one prepared split: row access without loading the whole split."""

    def __init__(self, dataset: str, split: str):
        first = paths.prepared_shard(dataset, split, 0)
        metadata = shard_metadata(first, dataset)
        self.meta: dict[str, Any] = metadata["meta"]
        count = int(self.meta.get("shards", {}).get(split, 1))
        self.files = [paths.prepared_shard(dataset, split, i) for i in range(count)]
        self._images: list[np.ndarray] | None = None
        labels, sizes = [], []
        for path in self.files:
            if not path.is_file():
                raise UserError(f"{path}: shard missing; run `otjr stage preprocess --dataset {dataset}` again")
            header, start = read_header(path)
            lab = np.array(_array(path, header, start, "labels"))
            labels.append(torch.from_numpy(lab))
            sizes.append(len(lab))
            self.shape = tuple(header["images"]["shape"][1:])
        self.labels = torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64)
        self.offsets = np.cumsum([0] + sizes)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.shape))

    def _maps(self) -> list[np.ndarray]:
        if self._images is None:  # opened lazily: each data-loader worker maps the files itself
            self._images = [_array(p, *read_header(p), "images") for p in self.files]
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": None}

    def rows(self, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 images of the given rows, in the given order."""
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(idx), *self.shape), dtype=np.uint8)
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        maps = self._maps()
        for s in np.unique(shard):
            where = np.nonzero(shard == s)[0]
            local = idx[where] - self.offsets[s]
            order = np.argsort(local, kind="stable")  # read each shard front to back
            out[where[order]] = maps[s][local[order]]
        return torch.from_numpy(out)

    def head(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n images (all when n is None) and their labels."""
        n = len(self) if n is None else min(n, len(self))
        parts = []
        for s, m in enumerate(self._maps()):
            take = min(n - int(self.offsets[s]), len(m))
            if take <= 0:
                break
            parts.append(torch.from_numpy(np.array(m[:take])))
        images = torch.cat(parts) if parts else torch.empty(0, *self.shape, dtype=torch.uint8)
        return images, self.labels[:n].clone()
