"""CIFAR-10 and CIFAR-100 from their python distribution, as torchvision fetches it.

The URL, the archive's md5 and every batch file's md5 are torchvision's own constants
(`torchvision.datasets.CIFAR10/CIFAR100`), checked with torchvision's md5 helper. The
batches are pickled numpy arrays; they are read with `pickle_stream`, which walks the
opcodes and never unpickles. A local copy (the .tar.gz, or a folder holding it or the
extracted `cifar-10-batches-py`, e.g. an existing torchvision root) can be named in
data.sources.<name> or $OTJR_<NAME>_SOURCE to skip the network.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core import paths
from ..core.errors import UserError
from .archive import extract
from .checksum import sha256
from .fetch import calculate_md5, fetch
from .pickle_stream import read_pickle_data
from .registry import DatasetSpec, RawSplits, register

MAX_EXTRACTED_BYTES = 400 * 2**20  # both versions extract to < 200 MB


#: torchvision's dataset classes: the source of every URL, file name and md5 used here. Filled
#: on first use: importing torchvision costs ~1.6 s, which every stage process would pay.
TORCHVISION: dict[str, type] = {}


@dataclass(frozen=True)
class Variant:
    name: str
    labels_key: str
    names_key: str

    @property
    def tv(self) -> type:
        if self.name not in TORCHVISION:
            from torchvision import datasets  # torchvision costs ~1.6 s of start-up: loaded only for this source

            TORCHVISION.setdefault("cifar10", datasets.CIFAR10)
            TORCHVISION.setdefault("cifar100", datasets.CIFAR100)
        return TORCHVISION[self.name]

    @property
    def files(self) -> dict[str, list[tuple[str, str]]]:
        """split -> [(batch file, md5)], and 'meta' -> [(meta file, md5)]."""
        return {
            "train": [tuple(f) for f in self.tv.train_list],
            "test": [tuple(f) for f in self.tv.test_list],
            "meta": [(self.tv.meta["filename"], self.tv.meta["md5"])],
        }


CIFAR10_V = Variant("cifar10", "labels", "label_names")
CIFAR100_V = Variant("cifar100", "fine_labels", "fine_label_names")


def _verify_batches(v: Variant, folder: Path) -> None:
    for entries in v.files.values():
        for name, md5 in entries:
            path = folder / name
            if not path.is_file():
                raise UserError(f"{path}: missing from the {v.name} copy (expected torchvision's {v.tv.base_folder})")
            got = calculate_md5(path)
            if got != md5:
                raise UserError(f"{path}: md5 {got} differs from torchvision's {md5}; delete it and download again")


def _archive_from(v: Variant, source: Path) -> Path | None:
    """The archive inside a user-supplied source, or None if it is an extracted folder."""
    if source.is_file():
        return source
    if (source / v.tv.filename).is_file():
        return source / v.tv.filename
    return None


def _download(v: Variant, raw_dir: Path, source: Path | None) -> None:
    archive = _archive_from(v, source) if source is not None else None
    if source is not None and archive is None:
        folder = source / v.tv.base_folder if (source / v.tv.base_folder).is_dir() else source
        _verify_batches(v, folder)
        target = raw_dir / v.tv.base_folder
        shutil.rmtree(raw_dir, ignore_errors=True)
        target.mkdir(parents=True)
        for entries in v.files.values():
            for name, _ in entries:
                shutil.copyfile(folder / name, target / name)
    else:
        if archive is None:
            archive = fetch(v.tv.url, paths.download_cache() / v.tv.filename, v.tv.tgz_md5)
        elif calculate_md5(archive) != v.tv.tgz_md5:
            raise UserError(f"{archive}: md5 differs from torchvision's {v.tv.tgz_md5} for {v.tv.filename}")
        extract(archive, raw_dir, max_bytes=MAX_EXTRACTED_BYTES, keep=lambda rel: rel.parts[0] == v.tv.base_folder)
    _verify_batches(v, raw_dir / v.tv.base_folder)


def _load(path: Path) -> dict:
    data = read_pickle_data(path.read_bytes(), str(path))
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a pickled dict, found {type(data).__name__}")
    return data


def _batch(v: Variant, path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _load(path)
    try:
        pixels, labels = d["data"], np.asarray(d[v.labels_key], dtype=np.int64)
    except KeyError as err:
        raise UserError(f"{path}: no {err} entry; not a {v.name} batch") from None
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape != (len(labels), 3072):
        raise UserError(f"{path}: 'data' is not a uint8 array of shape ({len(labels)}, 3072)")
    return pixels, labels


def _read(v: Variant, raw_dir: Path) -> RawSplits:
    folder = raw_dir / v.tv.base_folder
    _verify_batches(v, folder)
    names = [str(n) for n in _load(folder / v.files["meta"][0][0])[v.names_key]]
    splits, sources = {}, {}
    for split in ("train", "test"):
        parts = [_batch(v, folder / name) for name, _ in v.files[split]]
        pixels = np.concatenate([p for p, _ in parts])
        labels = np.concatenate([lab for _, lab in parts])
        if labels.min() < 0 or labels.max() >= len(names):
            raise UserError(f"{folder}: {split} labels outside 0..{len(names) - 1}")
        images = torch.from_numpy(pixels).reshape(-1, 3, 32, 32)  # rows are R plane, G plane, B plane
        splits[split] = (images, torch.from_numpy(labels))
    for entries in v.files.values():
        for name, _ in entries:
            sources[f"{v.tv.base_folder}/{name}"] = sha256(folder / name)
    return RawSplits(splits=splits, classes=names, sources=sources)


def _spec(v: Variant, num_classes: int) -> DatasetSpec:
    return register(
        DatasetSpec(
            name=v.name,
            num_classes=num_classes,
            channels=3,
            augment="crop_flip",
            download=lambda raw_dir, source: _download(v, raw_dir, source),
            read=lambda raw_dir: _read(v, raw_dir),
            description=f"{v.name.upper()} 32x32 colour, torchvision's download and md5s (python version)",
            takes_source=True,
        )
    )


SPEC10 = _spec(CIFAR10_V, 10)
SPEC100 = _spec(CIFAR100_V, 100)
