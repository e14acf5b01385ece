"""Reading prepared splits: safetensors shards opened as read-only memory maps.

A prepared split is one or more safetensors files (`paths.prepared_shard`), each holding
`images` (uint8 N, C, H, W) and `labels` (int64 N) plus our metadata. Images are memory
mapped, so a caller that wants a few rows (the first n test images, one training batch
of a split too big for the device) reads only those pages. Opening a split checks every
shard against the metadata first: tensor types, shapes, byte ranges within the file
(a truncated shard), image shape, row counts and the label range.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core import paths
from ..core.errors import UserError
from ..core.io import META_KEY
from ..core.schema import first_error

FORMAT = "otjr-prepared-1"
_DTYPES = {"U8": np.uint8, "I64": np.int64}
_KINDS = {"images": "U8", "labels": "I64"}


class _PreparedMeta(BaseModel):
    """The fields of a prepared split's metadata that reading it relies on (others pass through)."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)
    format: Literal["otjr-prepared-1"]
    num_classes: int = Field(ge=1)
    classes: list[str]
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=3, max_length=3)
    mean: list[float]
    std: list[Annotated[float, Field(gt=0)]]
    sizes: dict[str, Annotated[int, Field(ge=0)]]
    shards: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "_PreparedMeta":
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names for num_classes {self.num_classes}")
        if not len(self.mean) == len(self.std) == self.shape[0]:
            raise ValueError(f"mean/std must have one value per channel ({self.shape[0]})")
        return self


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors JSON header of `path` and the offset where tensor data starts."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 * 2**20:
                raise ValueError("header too large")
            header = json.loads(f.read(n))
    except (OSError, ValueError, RecursionError, struct.error) as err:
        raise UserError(f"{path}: not a readable safetensors prepared split ({err})") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a readable safetensors prepared split (header is not a mapping)")
    return header, 8 + n


def _metadata(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    try:
        metadata = json.loads((header.get("__metadata__") or {}).get(META_KEY, "{}"))
    except (ValueError, RecursionError, AttributeError):
        metadata = {}
    meta = metadata.get("meta") if isinstance(metadata, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a prepared split written by this pipeline")
    try:
        _PreparedMeta.model_validate(meta)
    except ValidationError as err:
        raise UserError(f"{path}: metadata {first_error(err, 'meta')}; run the preprocess stage again") from None
    return metadata


def shard_metadata(path: Path, dataset: str) -> dict[str, Any]:
    """Our metadata of one shard ({'meta': ..., 'split': ...}); a missing or foreign file is one clear line."""
    if not path.is_file():
        raise UserError(f"{path}: prepared split not found; run `otjr stage preprocess --dataset {dataset}` (or dvc repro)")
    return _metadata(path, read_header(path)[0])


def _entry(path: Path, header: dict, start: int, key: str, ndim: int) -> tuple[str, tuple[int, ...], int]:
    """(dtype, shape, offset) of tensor `key`, checked against the file: type, rank, byte count, file size."""
    entry = header.get(key)
    if not isinstance(entry, dict) or entry.get("dtype") != _KINDS[key]:
        raise UserError(f"{path}: no {key!r} tensor of type {_KINDS[key]}; run the preprocess stage again")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if (not isinstance(shape, list) or len(shape) != ndim or not all(type(d) is int and d >= 0 for d in shape)
            or not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)):
        raise UserError(f"{path}: {key!r} has a malformed shape or offsets in the header")
    begin, end = offsets
    itemsize = np.dtype(_DTYPES[entry["dtype"]]).itemsize
    if not 0 <= begin <= end or end - begin != int(np.prod(shape)) * itemsize:
        raise UserError(f"{path}: {key!r} byte range {begin}..{end} does not fit its shape {shape}")
    if start + end > path.stat().st_size:
        raise UserError(f"{path}: truncated ({path.stat().st_size} bytes, {key!r} needs {start + end}); "
                        "run the preprocess stage again")
    return entry["dtype"], tuple(shape), start + begin


def _array(path: Path, header: dict, start: int, key: str) -> np.ndarray:
    dtype, shape, offset = _entry(path, header, start, key, 4 if key == "images" else 1)
    if not np.prod(shape):
        return np.empty(shape, dtype=_DTYPES[dtype])
    return np.memmap(path, dtype=_DTYPES[dtype], mode="r", offset=offset, shape=shape)


def _check_shard(path: Path, header: dict, start: int, meta: dict, split: str) -> np.ndarray:
    """The shard's labels, after checking its tensors against the split's metadata."""
    own = _metadata(path, header)
    if own["meta"] != meta or own.get("split") != split:
        raise UserError(f"{path}: metadata differs from the split's first shard; run the preprocess stage again")
    _, shape, _ = _entry(path, header, start, "images", 4)
    labels = np.array(_array(path, header, start, "labels"))
    if list(shape[1:]) != list(meta["shape"]) or len(labels) != shape[0]:
        raise UserError(f"{path}: images {list(shape)} and {len(labels)} labels do not match the metadata's "
                        f"image shape {meta['shape']}")
    bad = (labels < 0) | (labels >= meta["num_classes"])
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{path}: label {int(labels[i])} at row {i} is outside 0..{meta['num_classes'] - 1}; "
                        "run the preprocess stage again")
    return labels


class SplitReader:
    """All shards of one prepared split: row access without loading the whole split."""

    def __init__(self, dataset: str, split: str):
        first = paths.prepared_shard(dataset, split, 0)
        metadata = shard_metadata(first, dataset)
        self.meta: dict[str, Any] = metadata["meta"]
        count = int(self.meta.get("shards", {}).get(split, 1))
        self.files = [paths.prepared_shard(dataset, split, i) for i in range(count)]
        self._images: list[np.ndarray] | None = None
        self.shape = tuple(self.meta["shape"])
        labels, sizes = [], []
        for path in self.files:
            if not path.is_file():
                raise UserError(f"{path}: shard missing; run `otjr stage preprocess --dataset {dataset}` again")
            lab = _check_shard(path, *read_header(path), self.meta, split)
            labels.append(torch.from_numpy(lab))
            sizes.append(len(lab))
        expected = self.meta["sizes"].get(split)
        if expected is not None and sum(sizes) != expected:
            raise UserError(f"{first}: the {split} split holds {sum(sizes)} images, its metadata says {expected}; "
                            "run the preprocess stage again")
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
