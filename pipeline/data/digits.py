"""The embedded default: scikit-learn's handwritten digits (1797 8x8 images, 10 classes).

The data ships inside scikit-learn, so download is a verified copy and needs no network.
The published set has no test split; a fixed, stratified 25% test split is drawn once.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch

from .checksum import verify_sha256
from .registry import DatasetSpec, RawSplits, register
from .split import stratified_split

FILE = "digits.csv.gz"
SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
TEST_FRACTION = 0.25
SPLIT_SEED = 20191208  # fixed: the test split never depends on the run's seed


def _source() -> Path:
    import sklearn.datasets  # scikit-learn is slow to import and only the download stage needs it

    return Path(sklearn.datasets.__file__).parent / "data" / FILE


def download(raw_dir: Path, source: Path | None = None) -> None:
    raw_dir.mkdir(parents=True, exist_ok=True)
    target = raw_dir / FILE
    verify_sha256(_source(), SHA256)
    tmp = target.with_suffix(".part")
    shutil.copyfile(_source(), tmp)
    verify_sha256(tmp, SHA256)
    tmp.replace(target)


def read(raw_dir: Path) -> RawSplits:
    path = raw_dir / FILE
    digest = verify_sha256(path, SHA256)
    rows = [line.split(",") for line in gzip.decompress(path.read_bytes()).decode().split()]
    values = torch.tensor([[int(v) for v in row] for row in rows], dtype=torch.int64)
    pixels, labels = values[:, :64], values[:, 64]
    # 17 grey levels (0..16) mapped exactly onto uint8 0..255.
    images = torch.round(pixels.double() * 255 / 16).to(torch.uint8).reshape(-1, 1, 8, 8)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    return RawSplits(
        splits={"train": (images[train_idx], labels[train_idx]), "test": (images[test_idx], labels[test_idx])},
        classes=[str(d) for d in range(10)],
        sources={FILE: digest},
    )


SPEC = register(
    DatasetSpec(
        name="digits",
        num_classes=10,
        channels=1,
        augment="none",
        download=download,
        read=read,
        description="scikit-learn handwritten digits, 8x8 grey, embedded (no network)",
    )
)
