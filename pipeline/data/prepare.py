"""Preprocess: raw files -> uint8 safetensors per split with metadata; and loading them back."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core import paths
from ..core.errors import UserError
from ..core.io import load_tensors, save_tensors
from .registry import DATASETS
from .split import stratified_split

VAL_SPLIT_SEED = 1234  # fixed: the validation split never depends on the run's seed
FORMAT = "otjr-prepared-1"


def download(name: str) -> Path:
    """Fetch dataset `name` into data/raw/<name>."""
    spec = DATASETS.get(name, key="dataset")
    out = paths.raw_dir(name)
    spec.download(out)
    return out


def preprocess(name: str, val_fraction: float) -> Path:
    """Read the raw files, split off a validation set, and write uint8 tensors + metadata."""
    spec = DATASETS.get(name, key="dataset")
    raw = spec.read(paths.raw_dir(name))
    splits = dict(raw.splits)
    if val_fraction > 0:
        images, labels = splits["train"]
        keep, held = stratified_split(labels, val_fraction, VAL_SPLIT_SEED)
        splits["train"] = (images[keep], labels[keep])
        splits["val"] = (images[held], labels[held])
    train = splits["train"][0].double() / 255
    meta = {
        "format": FORMAT,
        "dataset": name,
        "classes": raw.classes,
        "num_classes": len(raw.classes),
        "shape": list(train.shape[1:]),
        "mean": train.mean(dim=(0, 2, 3)).tolist(),
        "std": train.std(dim=(0, 2, 3)).tolist(),
        "sources": raw.sources,
        "sizes": {split: len(labels) for split, (_, labels) in splits.items()},
        "val_fraction": val_fraction,
        "val_split_seed": VAL_SPLIT_SEED,
    }
    out = paths.prepared_dir(name)
    for split, (images, labels) in splits.items():
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"{name}/{split}: reader must return uint8 NCHW images")
        save_tensors(
            paths.prepared_split(name, split),
            {"images": images, "labels": labels.to(torch.int64)},
            {"meta": meta, "split": split},
        )
    return out


def _read(name: str, split: str) -> tuple[dict, dict]:
    path = paths.prepared_split(name, split)
    if not path.is_file():
        raise UserError(f"{path}: prepared split not found; run `otjr stage preprocess --dataset {name}` (or dvc repro)")
    tensors, metadata = load_tensors(path, what="prepared split")
    meta = metadata.get("meta")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a prepared split written by this pipeline") from None
    return tensors, meta


def load_split_uint8(name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as stored: uint8 (N, C, H, W), and int64 labels (a quarter of the float memory)."""
    tensors, _ = _read(name, split)
    return tensors["images"], tensors["labels"]


def load_split(name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 in [0, 1] (N, C, H, W) and int64 labels, from the preprocessed files."""
    images, labels = load_split_uint8(name, split)
    return images.float().div_(255), labels


def load_meta(name: str) -> dict:
    """Classes, shape, per-channel mean/std and provenance of a prepared dataset."""
    return _read(name, "train")[1]


def has_split(name: str, split: str) -> bool:
    return paths.prepared_split(name, split).is_file()
