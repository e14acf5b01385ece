"""Each paper dataset, from generated files in its real format, through download -> preprocess ->
train -> attack at tiny size, with the paper's architecture for it at reduced width."""

from __future__ import annotations

import pytest

from conftest import write_params
from formats import FakeTorchvisionCifar, tar_gz, write_cifar, write_idx_set, write_imagenet, write_intel, zip_folder
from pipeline import api
from pipeline.core.io import read_json
from pipeline.data import cifar, imagenet100, load_meta, mnist


def _cifar(name, per_class):
    def make(tmp_path, monkeypatch):
        folder, _ = write_cifar(tmp_path / "src", name, per_class_train=per_class, per_class_test=1)
        archive = tar_gz(folder, tmp_path / "c.tar.gz")
        monkeypatch.setitem(cifar.TORCHVISION, name, FakeTorchvisionCifar.for_folder(folder, archive, "http://127.0.0.1:9/"))
        return str(archive)

    return make


def _idx(name):
    """Generated IDX files as a local source folder, their digests standing in for the published ones."""
    def make(tmp_path, monkeypatch):
        import hashlib

        truth = write_idx_set(tmp_path / "idx", train=40, test=10)
        variant = mnist.FASHION if name == "fashion_mnist" else mnist.MNIST
        kind = next(iter(variant.content.values()))[0]
        for base, data in truth["content"].items():
            monkeypatch.setitem(variant.content, base, (kind, hashlib.new(kind, data).hexdigest()))
        return str(tmp_path / "idx")

    return make


CASES = {
    "cifar10": (_cifar("cifar10", 4), "wrn34_10", {"depth": 10, "widen": 1}, None, 0.25),
    "cifar100": (_cifar("cifar100", 2), "wrn28_10", {"depth": 10, "widen": 1}, None, 0.0),
    "intel": (lambda tmp, mp: str(zip_folder(write_intel(tmp / "k", 4, 2), tmp / "archive.zip")),
              "resnet50", {"width": 4, "depth": 14}, 16, 0.25),
    "imagenet100": (lambda tmp, mp: str(write_imagenet(tmp / "ilsvrc", imagenet100.classes(), 2, 1)),
                    "preact_resnet18", {"width": 4, "depth": 10}, 8, 0.0),
    "fashion_mnist": (_idx("fashion_mnist"), "small_cnn", {"width": 4}, None, 0.25),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_download_preprocess_train_attack(project, tmp_path, monkeypatch, name):
    make_source, model, args, resolution, val_fraction = CASES[name]
    source = make_source(tmp_path, monkeypatch)
    write_params(project, {
        "datasets": [name],
        "data.sources": {name: source},
        "data.resolution": {name: resolution} if resolution else {},
        "data.val_fraction": val_fraction,
        "model.name": model,
        "model.args": args,
        "train.epochs": 1,
        "train.batch_size": 16,
        "train.eval_n": 8 if val_fraction else 0,
        "attack.n": 10,
    })
    api.download(name)
    api.preprocess(name)
    checkpoint = api.train(name, "pgd_at")
    record = read_json(api.attack(name, "pgd_at"))
    meta = load_meta(name)
    assert checkpoint.is_file() and record["dataset"] == name and record["n"] == 10
    trained = record["training"]["model"]
    assert (trained["name"], trained["args"]) == (model, args)
    assert record["training"]["data"]["sources"] == meta["sources"]
    for attack in ("fgsm", "pgd20"):
        assert 0.0 <= record[attack]["accuracy"] <= record["clean"]["accuracy"] <= 100.0
