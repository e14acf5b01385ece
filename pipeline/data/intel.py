"""Intel Image Classification (Kaggle, Bansal 2019): 6 scene classes, 150x150 JPEGs.

Kaggle needs credentials, so the user downloads the archive and names it (or the folder
it was unpacked into) in data.sources.intel or $OTJR_INTEL_SOURCE. Both Kaggle's nested
layout (seg_train/seg_train/<class>/) and a flat one (seg_train/<class>/) are accepted.
The download stage extracts the archive safely (or copies the folder), keeps only
seg_train and seg_test (seg_pred is unlabelled), and records the archive's sha256 and
every image's in manifest.json. seg_test is the test split.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..core.errors import UserError
from .archive import extract
from .checksum import sha256
from .registry import DatasetSpec, RawSplits, register
from .sources import class_folders, env_var, read_manifest, write_manifest

NAME = "intel"
CLASSES = ["buildings", "forest", "glacier", "mountain", "sea", "street"]
SPLITS = {"train": "seg_train", "test": "seg_test"}
MAX_EXTRACTED_BYTES = 4 * 2**30  # the archive extracts to ~400 MB
URL = "https://www.kaggle.com/datasets/puneet6060/intel-image-classification"


def help_line() -> str:
    return (f"intel: no source given; download archive.zip from {URL} (Kaggle account needed) and set "
            f"data.sources.intel in params.yaml (or ${env_var(NAME)}) to the zip or to the folder holding seg_train and seg_test")


def _split_folder(root: Path, name: str, where: Path) -> Path:
    """The folder named `name` under `root` whose sub-folders are the six classes (Kaggle nests it twice)."""
    candidates = [root] if root.name == name else []
    candidates += sorted(p for p in root.glob(f"**/{name}") if p.is_dir() and len(p.relative_to(root).parts) <= 4)
    for folder in sorted(candidates, key=lambda p: -len(p.parts)):
        if all((folder / c).is_dir() for c in CLASSES):
            return folder
    raise UserError(f"{where}: no {name} folder with the class folders {', '.join(CLASSES)} "
                    f"(expected {name}/<class>/*.jpg or {name}/{name}/<class>/*.jpg)")


def download(raw_dir: Path, source: Path | None) -> None:
    if source is None:
        raise UserError(help_line())
    if source.is_file():
        info = {"name": source.name, "sha256": sha256(source)}
        staging = raw_dir.with_name(f".{raw_dir.name}.source")
        keep = lambda rel: bool(set(SPLITS.values()) & set(rel.parts))  # noqa: E731
        root = extract(source, staging, max_bytes=MAX_EXTRACTED_BYTES, keep=keep)
    else:
        info, staging, root = {"name": source.name, "sha256": None}, None, source
    try:
        folders = {split: _split_folder(root, name, source) for split, name in SPLITS.items()}
        shutil.rmtree(raw_dir, ignore_errors=True)
        items = {}
        for split, folder in folders.items():
            found = class_folders(folder, CLASSES, str(source))
            copied = []
            for path, label in found:
                dest = raw_dir / SPLITS[split] / CLASSES[label] / path.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                (shutil.move if staging else shutil.copyfile)(path, dest)
                copied.append((dest, label))
            items[split] = copied
        write_manifest(raw_dir, NAME, raw_dir, CLASSES, items, info)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def read(raw_dir: Path) -> RawSplits:
    return read_manifest(raw_dir, NAME)


SPEC = register(
    DatasetSpec(
        name=NAME,
        num_classes=len(CLASSES),
        channels=3,
        augment="crop_flip",
        download=download,
        read=read,
        description="Intel Image Classification (Kaggle), 6 classes, 150x150; from a local archive or folder",
        takes_source=True,
    )
)
