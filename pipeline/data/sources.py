"""Where user-supplied data lives, and the manifest that pins it down.

Datasets that cannot be fetched by the pipeline (Kaggle needs credentials, ImageNet a
registration) are read from a path the user gives: `data.sources.<name>` in params.yaml,
or else the environment variable `OTJR_<NAME>_SOURCE`. The download stage lists the
image files it uses in `manifest.json` (relative path, label, sha256); preprocess reads
exactly those files and checks each one against its recorded sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..core import paths
from ..core.errors import UserError
from ..core.io import write_text
from ..core.progress import progress
from .images import FileSplit, is_image, threads
from .registry import RawSplits

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "otjr-manifest-1"


def env_var(dataset: str) -> str:
    return f"OTJR_{dataset.upper()}_SOURCE"


def resolve_source(dataset: str, configured: str | None) -> Path | None:
    """The dataset's source path from params (first) or the environment; None when neither is set."""
    where, value = f"data.sources.{dataset}", configured
    if not value:
        where, value = f"${env_var(dataset)}", os.environ.get(env_var(dataset))
    if not value:
        return None
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    if not path.is_absolute():
        path = paths.root() / path
    if not path.exists():
        raise UserError(f"{where}: {path} does not exist")
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_files(files: list[Path], what: str, show_progress: bool | None = None) -> list[str]:
    """sha256 of every file, read in parallel threads, with a progress bar."""

    def one(path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        return h.hexdigest()

    with progress(show_progress) as bar, ThreadPoolExecutor(threads()) as pool:
        task = bar.add_task(f"checksum {what}", total=len(files), info="")
        digests = []
        for digest in pool.map(one, files):
            digests.append(digest)
            bar.advance(task)
    return digests


def refuse_link(path: Path, where: str) -> Path:
    """`path`, unless it is a symbolic link: a user-supplied folder is read as it is, never followed out of."""
    if path.is_symlink():
        raise UserError(f"{where}: {path} is a symbolic link (to {os.readlink(path)!r}); links in a source folder "
                        "are refused, copy the file in instead")
    return path


def class_folders(folder: Path, classes: list[str], where: str) -> list[tuple[Path, int]]:
    """(image file, label) for `folder/<class>/*` in class order, files sorted by name; links refused."""
    items = []
    for label, name in enumerate(classes):
        sub = refuse_link(folder / name, where)
        if not sub.is_dir():
            raise UserError(f"{where}: class folder {sub} is missing")
        files = sorted(p for p in sub.iterdir() if is_image(refuse_link(p, where)))
        if not files:
            raise UserError(f"{where}: class folder {sub} holds no images")
        items += [(p, label) for p in files]
    return items


def write_manifest(
    raw_dir: Path,
    dataset: str,
    root: Path,
    classes: list[str],
    splits: dict[str, list[tuple[Path, int]]],
    source: dict[str, Any],
    show_progress: bool | None = None,
) -> Path:
    """Record every file (path relative to `root`, label, sha256) of every split in raw_dir/manifest.json."""
    entries = {}
    for split, items in splits.items():
        digests = hash_files([p for p, _ in items], f"{dataset} {split}", show_progress)
        entries[split] = [[p.relative_to(root).as_posix(), label, d] for (p, label), d in zip(items, digests)]
    manifest = {
        "format": MANIFEST_FORMAT,
        "dataset": dataset,
        "root": "." if root == raw_dir else str(root),
        "classes": classes,
        "source": source,
        "splits": entries,
    }
    raw_dir.mkdir(parents=True, exist_ok=True)
    out = raw_dir / MANIFEST
    write_text(out, json.dumps(manifest, indent=1) + "\n")
    return out


def read_manifest(raw_dir: Path, dataset: str) -> RawSplits:
    """The splits the manifest lists, as `FileSplit`s, with the manifest's checksum as provenance."""
    path = raw_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: not found; run `otjr stage download --dataset {dataset}` (or dvc repro)")
    data = path.read_bytes()
    try:
        manifest = json.loads(data)
    except ValueError:
        raise UserError(f"{path}: not valid JSON; run the download stage again") from None
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("dataset") != dataset:
        raise UserError(f"{path}: not a {dataset} manifest of this pipeline; run the download stage again")
    root = raw_dir if manifest["root"] == "." else Path(manifest["root"])
    splits = {}
    for split, rows in manifest["splits"].items():
        splits[split] = FileSplit(
            files=[root / rel for rel, _, _ in rows],
            labels=torch.tensor([label for _, label, _ in rows], dtype=torch.int64),
            sha256=[digest for _, _, digest in rows],
        )
    sources = {MANIFEST: sha256_bytes(data)}
    if manifest["source"].get("sha256"):
        sources[manifest["source"]["name"]] = manifest["source"]["sha256"]
    return RawSplits(splits=splits, classes=list(manifest["classes"]), sources=sources)
