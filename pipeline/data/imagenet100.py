"""ImageNet100: the usual 100-class subset of ILSVRC-2012 (the CMC list, Tian et al. 2019).

The class list ships with the project (`imagenet100_classes.txt`, pinned by a test); labels
follow the sorted WordNet ids, as torchvision's ImageFolder numbers them. ImageNet needs a
registration, so the user names a local ILSVRC-2012 copy in data.sources.imagenet100 or
$OTJR_IMAGENET100_SOURCE. Accepted layouts: `train/<wnid>/*.JPEG` with `val/<wnid>/*.JPEG`
(torchvision / PyTorch-examples layout), or Kaggle's `ILSVRC/Data/CLS-LOC/{train,val}` with
the flat val folder labelled by `LOC_val_solution.csv`. The download stage copies nothing:
it records every file of the 100 classes (path, label, sha256) in manifest.json, and
preprocess reads them from the copy, checking each against its sha256. The official
validation set (50 images per class) is the test split.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..core.errors import UserError
from .images import is_image
from .registry import DatasetSpec, RawSplits, register
from .sources import class_folders, env_var, read_manifest, refuse_link, write_manifest

NAME = "imagenet100"
CLASS_FILE = Path(__file__).with_name("imagenet100_classes.txt")
VAL_CSV = "LOC_val_solution.csv"


def classes() -> list[str]:
    """The 100 WordNet ids, sorted (label i is the i-th)."""
    return sorted(line.strip() for line in CLASS_FILE.read_text().splitlines() if line.strip())


def help_line() -> str:
    return (f"imagenet100: no source given; set data.sources.imagenet100 in params.yaml (or ${env_var(NAME)}) to a local "
            "ILSVRC-2012 copy holding train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (or Kaggle's ILSVRC/Data/CLS-LOC with "
            f"{VAL_CSV}); ImageNet is at https://image-net.org/download-images.php (registration needed)")


def _locate(source: Path) -> tuple[Path, Path, Path | None]:
    """(train folder, val folder, the val label CSV if val is flat)."""
    for base in (source, source / "ILSVRC" / "Data" / "CLS-LOC", source / "Data" / "CLS-LOC"):
        if (base / "train").is_dir() and (base / "val").is_dir():
            train, val = base / "train", base / "val"
            break
    else:
        raise UserError(f"{source}: no train/ and val/ folders (nor ILSVRC/Data/CLS-LOC/train, val); {help_line()}")
    wanted = classes()
    if any((val / w).is_dir() for w in wanted):
        return train, val, None
    for folder in (source, train.parent, *train.parents[:3]):
        if (folder / VAL_CSV).is_file():
            return train, val, folder / VAL_CSV
    raise UserError(f"{val}: no class folders val/<wnid>/ and no {VAL_CSV} found beside it; sort the validation "
                    "images into val/<wnid>/ (as PyTorch's ImageNet example does) or add Kaggle's LOC_val_solution.csv")


def _flat_val(val: Path, table: Path, wanted: list[str]) -> list[tuple[Path, int]]:
    label = {w: i for i, w in enumerate(wanted)}
    items = []
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            wnid = (row.get("PredictionString") or "").split(" ")[0]
            if wnid in label:
                path = val / f"{row['ImageId']}.JPEG"
                if not is_image(refuse_link(path, str(table))):
                    raise UserError(f"{table}: lists {path.name}, which is not in {val}")
                items.append((path, label[wnid]))
    missing = sorted(set(wanted) - {wanted[lab] for _, lab in items})
    if missing:
        raise UserError(f"{table}: no validation images for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return sorted(items, key=lambda item: (item[1], item[0].name))


def download(raw_dir: Path, source: Path | None) -> None:
    if source is None:
        raise UserError(help_line())
    train, val, table = _locate(source)
    wanted = classes()
    items = {
        "train": class_folders(train, wanted, str(source)),
        "test": _flat_val(val, table, wanted) if table else class_folders(val, wanted, str(source)),
    }
    write_manifest(raw_dir, NAME, train.parent, wanted, items, {"name": source.name, "path": str(source), "sha256": None})


def read(raw_dir: Path) -> RawSplits:
    return read_manifest(raw_dir, NAME)


SPEC = register(
    DatasetSpec(
        name=NAME,
        num_classes=100,
        channels=3,
        augment="crop_flip",
        download=download,
        read=read,
        description="ImageNet100 (CMC's 100 ILSVRC-2012 classes), read from a local ImageNet copy",
        takes_source=True,
    )
)
