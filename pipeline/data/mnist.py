"""MNIST and Fashion-MNIST: four IDX files each (28x28 grey images, 10 classes, 60,000 + 10,000).

Downloads use torchvision's own constants (`torchvision.datasets.MNIST/FashionMNIST`:
`mirrors` and `resources`, the .gz files' md5s), through `fetch` (resumable, md5-checked).
A local copy is used instead when given (data.sources.<name> or $OTJR_<NAME>_SOURCE: a
folder holding the four files, gzipped or not, or a torchvision root) or, for
Fashion-MNIST, when Debian's `dataset-fashion-mnist` package is installed. A local copy
is checked by its *decompressed* content, since a re-compressed .gz (Debian's are) has
another md5 than torchvision's while holding the published bytes: Fashion-MNIST against
the sha256 of the four published files, MNIST against the md5s of the decompressed
originals, the values MNIST loaders have published for a decade. Every file's IDX header
is checked before its data is read (`idx.read_idx`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core import paths
from ..core.errors import UserError
from .fetch import fetch
from .idx import IdxArray, read_idx
from .registry import DatasetSpec, RawSplits, register
from .sources import env_var

#: split -> (images file, labels file), names as published without the .gz suffix.
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SHAPE = (28, 28)

#: Published content of the decompressed files: (hash name, digest) per file.
FASHION_CONTENT = {
    "train-images-idx3-ubyte": ("sha256", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte": ("sha256", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte": ("sha256", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte": ("sha256", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
MNIST_CONTENT = {
    "train-images-idx3-ubyte": ("md5", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": ("md5", "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": ("md5", "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": ("md5", "27ae3e4e09519cfbb04c329615203637"),
}

#: Where a system package installs a copy (used when no source is configured). Tests replace it.
SYSTEM_COPIES: dict[str, Path] = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}

#: torchvision's dataset classes, the source of every URL, file name and md5 (imported on first use).
TORCHVISION: dict[str, type] = {}


@dataclass(frozen=True)
class Variant:
    name: str
    tv_name: str
    content: dict[str, tuple[str, str]]

    @property
    def tv(self) -> type:
        if self.name not in TORCHVISION:
            from torchvision import datasets  # torchvision costs ~1.6 s of start-up: loaded only for this source

            TORCHVISION.setdefault(self.name, getattr(datasets, self.tv_name))
        return TORCHVISION[self.name]

    def md5_of_gz(self, base: str) -> str:
        """torchvision's md5 of `<base>.gz`."""
        return dict(self.tv.resources)[f"{base}.gz"]


FASHION = Variant("fashion_mnist", "FashionMNIST", FASHION_CONTENT)
MNIST = Variant("mnist", "MNIST", MNIST_CONTENT)


def _bases() -> list[str]:
    return [base for pair in FILES.values() for base in pair]


def _find(folder: Path, base: str) -> Path | None:
    for name in (f"{base}.gz", base):
        if (folder / name).is_file():
            return folder / name
    return None


def _source_folder(v: Variant, source: Path) -> Path:
    """The folder in a user-supplied source that holds the four files (the source itself or a torchvision root)."""
    if not source.is_dir():
        raise UserError(f"{source}: expected a folder holding the four {v.name} IDX files (.gz or not)")
    for folder in (source, source / v.tv_name / "raw"):
        if all(_find(folder, b) for b in _bases()):
            return folder
    missing = [b for b in _bases() if _find(source, b) is None]
    raise UserError(f"{source}: {', '.join(missing)} (.gz or not) missing from the {v.name} copy")


def check_content(v: Variant, path: Path, parsed: IdxArray, base: str) -> None:
    """A file's decompressed content against the published digest; a mismatch names the file."""
    kind, expected = v.content[base]
    got = parsed.sha256 if kind == "sha256" else parsed.md5
    if got != expected:
        raise UserError(f"{path}: decompressed content has {kind} {got}, the published {base} has {expected}; "
                        "not the published file")


def _copy_verified(v: Variant, src: Path, raw_dir: Path, base: str) -> None:
    check_content(v, src, read_idx(src), base)
    dest = raw_dir / src.name
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)


def _fetch(v: Variant, base: str) -> Path:
    """`<base>.gz` from the first of torchvision's mirrors that answers, md5-checked."""
    name, md5 = f"{base}.gz", v.md5_of_gz(base)
    errors = []
    for mirror in v.tv.mirrors:
        try:
            return fetch(f"{mirror}{name}", paths.download_cache() / v.name / name, md5)
        except UserError as err:
            errors.append(str(err))
    hint = f"; or set data.sources.{v.name} (or ${env_var(v.name)}) to a folder holding the four IDX files"
    raise UserError(errors[-1] + hint)


def _download(v: Variant, raw_dir: Path, source: Path | None) -> None:
    if source is None and v.name in SYSTEM_COPIES and SYSTEM_COPIES[v.name].is_dir():
        source = SYSTEM_COPIES[v.name]
    folder = _source_folder(v, source) if source is not None else None
    files = {b: _find(folder, b) if folder else _fetch(v, b) for b in _bases()}
    shutil.rmtree(raw_dir, ignore_errors=True)
    raw_dir.mkdir(parents=True)
    for base, path in files.items():
        _copy_verified(v, path, raw_dir, base)


def _read(v: Variant, raw_dir: Path) -> RawSplits:
    splits, sources = {}, {}
    for split, (images_base, labels_base) in FILES.items():
        parsed = {}
        for base in (images_base, labels_base):
            path = _find(raw_dir, base)
            if path is None:
                raise UserError(f"{raw_dir / base}: not found; "
                                f"run `otjr stage download --dataset {v.name}` (or dvc repro)")
            parsed[base] = read_idx(path)
            check_content(v, path, parsed[base], base)
            sources[base] = parsed[base].sha256
        images, labels = parsed[images_base].array, parsed[labels_base].array
        where = raw_dir / images_base
        if images.ndim != 3 or images.shape[1:] != SHAPE or labels.shape != images.shape[:1]:
            raise UserError(f"{where}: {split} images of shape {images.shape} with labels of shape {labels.shape}; "
                            "expected (N, 28, 28) and (N,)")
        if labels.size and int(labels.max()) >= 10:
            raise UserError(f"{raw_dir / labels_base}: labels outside 0..9")
        splits[split] = (torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype("int64")))
    return RawSplits(splits=splits, classes=[str(c) for c in v.tv.classes], sources=sources)


def _spec(v: Variant, description: str) -> DatasetSpec:
    return register(
        DatasetSpec(
            name=v.name,
            num_classes=10,
            channels=1,
            augment="none",
            download=lambda raw_dir, source: _download(v, raw_dir, source),
            read=lambda raw_dir: _read(v, raw_dir),
            description=description,
            takes_source=True,
        )
    )


SPEC_FASHION = _spec(FASHION, "Fashion-MNIST 28x28 grey; torchvision's download and md5s, or a local copy "
                              "(Debian's dataset-fashion-mnist) checked by its decompressed content")
SPEC_MNIST = _spec(MNIST, "MNIST 28x28 grey; torchvision's download and md5s, or a local copy checked by its "
                          "decompressed content")
