"""Intel (Kaggle folder and zip layouts) and ImageNet100 (ILSVRC train/val trees) from generated
files: download -> preprocess -> load, clear one-line errors when the data is absent or altered."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from conftest import run_cli, write_params
from formats import INTEL_CLASSES, class_colour, write_imagenet, write_intel, zip_folder
from pipeline import api
from pipeline.core import paths
from pipeline.core.errors import UserError
from pipeline.data import imagenet100, load_meta, load_split
from pipeline.data.checksum import sha256


def _use(project, name, source, resolution=16, **extra):
    write_params(project, {"data.sources": {name: str(source)}, "data.resolution": {name: resolution}, **extra})


def _mean_colour(x: torch.Tensor) -> np.ndarray:
    return (x.mean(dim=(1, 2)) * 255).numpy()


@pytest.mark.parametrize("as_zip", [False, True])
def test_intel_download_preprocess_load(project, tmp_path, as_zip):
    src = write_intel(tmp_path / "kaggle", per_class_train=4, per_class_test=2)
    source = zip_folder(src, tmp_path / "archive.zip") if as_zip else src
    _use(project, "intel", source, **{"data.val_fraction": 0.25})
    api.download("intel")
    raw = paths.raw_dir("intel")
    assert sorted(p.name for p in raw.iterdir()) == ["manifest.json", "seg_test", "seg_train"]  # seg_pred dropped
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == (sha256(source) if as_zip else None)
    api.preprocess("intel")
    meta = load_meta("intel")
    assert meta["classes"] == INTEL_CLASSES and meta["shape"] == [3, 16, 16]
    assert meta["sizes"] == {"train": 18, "val": 6, "test": 12} and meta["resize"]["size"] == 16
    assert meta["sources"]["manifest.json"] == sha256(raw / "manifest.json")
    x, y = load_split("intel", "test")
    assert x.shape == (12, 3, 16, 16) and y.tolist() == sorted(y.tolist())  # class folders in order
    for img, label in zip(x, y):  # each image keeps its class colour through JPEG and resizing
        assert np.abs(_mean_colour(img) - np.array(class_colour(int(label), 6))).max() < 12


def test_intel_wrong_folder_and_missing_path(project, tmp_path):
    (tmp_path / "empty" / "seg_train").mkdir(parents=True)
    _use(project, "intel", tmp_path / "empty")
    with pytest.raises(UserError, match="no seg_train folder with the class folders"):
        api.download("intel")
    _use(project, "intel", tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"data.sources.intel: .*nowhere does not exist"):
        api.download("intel")


def test_intel_resolution_is_required(project, tmp_path):
    write_params(project, {"data.sources": {"intel": str(write_intel(tmp_path / "k", 1, 1))}})
    api.download("intel")
    with pytest.raises(UserError, match="data.resolution.intel: required"):
        api.preprocess("intel")


def test_changed_file_after_download_is_caught(project, tmp_path):
    _use(project, "intel", write_intel(tmp_path / "k", 2, 1))
    api.download("intel")
    victim = next((paths.raw_dir("intel") / "seg_test" / "sea").iterdir())
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(UserError, match="changed since the download stage"):
        api.preprocess("intel")


# ------------------------------------------------------------------ ImageNet100
def test_class_list_is_the_standard_100_subset():
    wnids = imagenet100.classes()
    assert len(wnids) == len(set(wnids)) == 100 and all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert wnids == sorted(wnids)
    # pinned: the CMC subset (Tian et al. 2019), as the file ships it
    assert sha256(imagenet100.CLASS_FILE) == "79f3f1552ccc478ce24bd934b4573625db584ddc1f4643ae23c994a94cb11397"
    assert {"n02869837", "n01749939", "n02090622", "n01855672"} <= set(wnids)


@pytest.mark.parametrize("kaggle", [False, True])
def test_imagenet100_download_preprocess_load(project, tmp_path, kaggle):
    wnids = imagenet100.classes()
    root = write_imagenet(tmp_path / "ilsvrc", wnids, per_class_train=2, per_class_val=1, kaggle=kaggle)
    _use(project, "imagenet100", root, resolution=8, **{"data.val_fraction": 0.0, "train.eval_n": 0})
    api.download("imagenet100")
    raw = paths.raw_dir("imagenet100")
    assert [p.name for p in raw.iterdir()] == ["manifest.json"]  # nothing copied
    api.preprocess("imagenet100")
    meta = load_meta("imagenet100")
    assert meta["classes"] == wnids and meta["sizes"] == {"train": 200, "test": 100}  # n99999999 ignored
    x, y = load_split("imagenet100", "test")
    assert x.shape == (100, 3, 8, 8) and y.tolist() == list(range(100))
    for img, label in zip(x[::17], y[::17]):
        assert np.abs(_mean_colour(img) - np.array(class_colour(int(label), 100))).max() < 12


def test_imagenet100_absent_or_incomplete(project, tmp_path, monkeypatch):
    monkeypatch.delenv("OTJR_IMAGENET100_SOURCE", raising=False)
    write_params(project, {"datasets": ["imagenet100"], "data.resolution": {"imagenet100": 32}})
    proc = run_cli("stage", "download", "--dataset", "imagenet100", cwd=project)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "image-net.org" in lines[0] and "OTJR_IMAGENET100_SOURCE" in lines[0]
    root = write_imagenet(tmp_path / "partial", imagenet100.classes()[:99], per_class_train=1)
    _use(project, "imagenet100", root)
    with pytest.raises(UserError, match=f"class folder .*{imagenet100.classes()[99]} is missing"):
        api.download("imagenet100")


@pytest.mark.parametrize("where", ["image", "class folder", "flat val image"])
def test_links_in_a_folder_source_are_refused(project, tmp_path, where):
    """A symlink in a user-supplied folder is never followed (it could point anywhere, e.g. /etc/passwd)."""
    wnids = imagenet100.classes()
    root = write_imagenet(tmp_path / "ilsvrc", wnids, per_class_train=1, per_class_val=1,
                          kaggle=where == "flat val image")
    train = next(p for p in root.rglob("train") if p.is_dir())
    if where == "image":
        link = train / wnids[3] / "stolen.JPEG"
        link.symlink_to("/etc/passwd")
    elif where == "class folder":
        link = train / wnids[5]
        link.rename(tmp_path / "elsewhere")
        link.symlink_to(tmp_path / "elsewhere")
    else:
        val = train.parent / "val"
        link = sorted(val.glob("*.JPEG"))[0]
        link.unlink()
        link.symlink_to("/etc/passwd")
    _use(project, "imagenet100", root, resolution=8)
    with pytest.raises(UserError, match=f"{re.escape(str(link))} is a symbolic link"):
        api.download("imagenet100")
    assert not (paths.raw_dir("imagenet100") / "manifest.json").exists()
