"""Preprocess: raw files -> uint8 safetensors shards per split with metadata; and loading them back.

Each split is written in shards of at most `SHARD_BYTES` of images (`train.safetensors`,
`train.1.safetensors`, ...). Every shard carries the dataset's metadata: classes,
per-channel mean/std of the training split (after the validation split is held out),
shape, sizes, the resize rule when images were resized, and the raw files' checksums.
The test split is written as published and never feeds the statistics.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import torch

from ..core import paths
from ..core.errors import UserError
from ..core.io import check_writable, load_tensors, save_tensors
from ..core.progress import progress
from .images import RESIZE_RULES, TensorSplit
from .registry import DATASETS
from .shards import FORMAT, SplitReader, shard_metadata
from .sources import resolve_source
from .split import stratified_split, stratified_subset

VAL_SPLIT_SEED = 1234  # fixed: the validation split never depends on the run's seed
TRAIN_SUBSET_SEED = 4321  # fixed: data.train_n's subset never depends on the run's seed
SHARD_BYTES = 1 << 30  # images per shard file (1 GiB)
STATS_VALUES = 1 << 27  # values per float64 piece when computing mean/std (1 GiB of memory)
LOAD_CHUNK = 4096  # images decoded per step (progress granularity)

__all__ = ["FORMAT", "download", "preprocess", "load_split", "load_split_uint8", "load_meta", "has_split"]


def download(name: str, source: str | None = None) -> Path:
    """Fetch dataset `name` into data/raw/<name>; `source` is data.sources.<name> (None: env var or network)."""
    spec = DATASETS.get(name, key="dataset")
    if source and not spec.takes_source:
        raise UserError(f"data.sources.{name}: {name} is not read from a user-supplied source; remove the key")
    out = paths.raw_dir(name)
    check_writable(out)
    spec.download(out, resolve_source(name, source) if spec.takes_source else None)
    return out


def _combine(a: tuple, b: tuple) -> tuple:
    """Chan et al.'s pairwise update of (count, mean, std) per channel (unbiased variance)."""
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    delta = mb - ma
    m2 = sa**2 * (na - 1) + sb**2 * (nb - 1) + delta**2 * na * nb / n
    return n, ma + delta * nb / n, (m2 / (n - 1)).sqrt()


def _pieces_stats(images: torch.Tensor) -> list[tuple]:
    """(count, mean, std) per channel of pieces of a uint8 batch scaled to [0, 1], in float64."""
    rows = max(1, STATS_VALUES // max(1, images[0].numel())) if len(images) else 1
    out = []
    for i in range(0, len(images), rows):
        x = images[i : i + rows].double() / 255
        out.append((x.numel() // x.shape[1], x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))))
    return out


def _as_split(split):
    return TensorSplit(*split) if isinstance(split, tuple) else split


def preprocess(name: str, val_fraction: float, resolution: int | None = None, show_progress: bool | None = None,
               resize: str = "crop", train_n: int | None = None) -> Path:
    """Read the raw files, resize to `resolution` (None: native size) by rule `resize`, hold out a validation set,
    keep a class-stratified `train_n` of the rest (None: all), write shards."""
    spec = DATASETS.get(name, key="dataset")
    if not paths.raw_dir(name).is_dir():
        raise UserError(f"{paths.raw_dir(name)}: raw data not found; run `otjr stage download --dataset {name}` "
                        "(or dvc repro)")
    check_writable(paths.prepared_dir(name))
    raw = spec.read(paths.raw_dir(name))
    sources = {split: _as_split(s) for split, s in raw.splits.items()}
    natives = {s.native_size() for s in sources.values()}
    if resolution is None and (None in natives or len(natives) != 1):
        raise UserError(f"data.resolution.{name}: required, since {name}'s images are not all one square size (e.g. 32)")
    size = resolution or natives.pop()
    resized = resolution is not None and any(s.native_size() != resolution for s in sources.values())

    plan = {split: (src, torch.arange(len(src.labels))) for split, src in sources.items()}
    if val_fraction > 0:
        train = sources["train"]
        keep, held = stratified_split(train.labels, val_fraction, VAL_SPLIT_SEED)
        plan["train"], plan["val"] = (train, keep), (train, held)
    if train_n is not None:
        src, keep = plan["train"]
        if train_n > len(keep):
            raise UserError(f"data.train_n.{name}: {train_n} is more than the {len(keep)} training images of {name} "
                            f"left after the validation hold-out (val_fraction {val_fraction})")
        plan["train"] = (src, keep[stratified_subset(src.labels[keep], train_n, TRAIN_SUBSET_SEED)])

    staging = paths.prepared_dir(name).with_name(f".{name}.preparing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    rows = max(1, SHARD_BYTES // (spec.channels * size * size))
    written: dict[str, list[Path]] = {}
    stats: list[tuple] = []
    try:
        with progress(show_progress) as bar:
            task = bar.add_task(f"preprocess {name}", total=sum(len(i) for _, i in plan.values()), info="")
            for split, (src, indices) in plan.items():
                written[split] = []
                for k, start in enumerate(range(0, max(1, len(indices)), rows)):
                    idx = indices[start : start + rows]
                    chunks = []
                    for c in range(0, len(idx), LOAD_CHUNK):  # decode in chunks so the bar moves
                        chunks.append(src.load(idx[c : c + LOAD_CHUNK], size, resize))
                        bar.advance(task, len(chunks[-1]))
                    images = torch.cat(chunks) if chunks else src.load(idx, size, resize)
                    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != spec.channels:
                        raise ValueError(f"{name}/{split}: reader must return uint8 NCHW images with {spec.channels} channels")
                    if split == "train":
                        stats += _pieces_stats(images)
                    tmp = staging / f"{split}.{k}.part"
                    save_tensors(tmp, {"images": images, "labels": src.labels[idx].to(torch.int64)})
                    written[split].append(tmp)
        _, mean, std = functools.reduce(_combine, stats)
        sizes = {split: len(indices) for split, (_, indices) in plan.items()}
        meta = {
            "format": FORMAT,
            "dataset": name,
            "classes": raw.classes,
            "num_classes": len(raw.classes),
            "shape": [spec.channels, size, size],
            "mean": mean.tolist(),
            "std": std.tolist(),
            "sources": raw.sources,
            "sizes": sizes,
            "val_fraction": val_fraction,
            "val_split_seed": VAL_SPLIT_SEED,
        }
        if train_n is not None:
            meta["train_subset"] = {"n": train_n, "seed": TRAIN_SUBSET_SEED, "rule": "class-stratified"}
        if resized:
            meta["resize"] = {"size": size, "rule": RESIZE_RULES[resize]}
        if any(len(files) > 1 for files in written.values()):
            meta["shards"] = {split: len(files) for split, files in written.items()}
        for split, files in written.items():
            for k, tmp in enumerate(files):
                tensors, _ = load_tensors(tmp)
                extra = {"shard": k} if len(files) > 1 else {}
                save_tensors(staging / paths.prepared_shard(name, split, k).name, tensors,
                             {"meta": meta, "split": split, **extra})
                tmp.unlink()
        out = paths.prepared_dir(name)
        shutil.rmtree(out, ignore_errors=True)
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def load_split_uint8(name: str, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as stored: uint8 (N, C, H, W), and int64 labels; only the first `limit` when given."""
    return SplitReader(name, split).head(limit)


def load_split(name: str, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 in [0, 1] (N, C, H, W) and int64 labels, from the preprocessed files."""
    images, labels = load_split_uint8(name, split, limit)
    return images.float().div_(255), labels


def load_meta(name: str) -> dict:
    """Classes, shape, per-channel mean/std and provenance of a prepared dataset."""
    return shard_metadata(paths.prepared_split(name, "train"), name)["meta"]


def has_split(name: str, split: str) -> bool:
    return paths.prepared_split(name, split).is_file()
