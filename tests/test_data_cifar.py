"""CIFAR-10/100 from generated files in the python version's real format: pickle reading without
unpickling, download (HTTP with resume, local archive, local folder) -> preprocess -> load."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import torchvision

from formats import FakeTorchvisionCifar, py2_pickle, tar_gz, write_cifar
from pipeline import api
from pipeline.core import paths
from pipeline.core.errors import UserError
from pipeline.data import cifar, load_meta, load_split
from pipeline.data.pickle_stream import read_pickle_data


# ------------------------------------------------------------------ the pickle reader
def test_reads_python2_cpickle_stream_exactly():
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    stream = py2_pickle({b"data": data, b"labels": [3, 7], b"batch_label": b"x", b"names": [b"cat", b"dog"]})
    out = read_pickle_data(stream, "t")
    assert out["labels"] == [3, 7] and out["names"] == ["cat", "dog"] and out["batch_label"] == "x"
    assert out["data"].dtype == np.uint8 and np.array_equal(out["data"], data)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_reads_python3_pickles_of_plain_data(protocol):
    obj = {"a": np.arange(12, dtype=np.int64).reshape(3, 4), b"k": [1, -2, 2**70, 1.5, None, True], "t": (1, "s")}
    out = read_pickle_data(pickle.dumps(obj, protocol=protocol), "t")
    assert np.array_equal(out["a"], obj["a"]) and out["a"].dtype == np.int64
    assert out["k"] == obj[b"k"] and out["t"] == (1, "s")


def test_code_in_a_pickle_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for protocol in (0, 2, 4):
        with pytest.raises(UserError, match="not plain data; refused") as err:
            read_pickle_data(pickle.dumps({"data": Evil()}, protocol=protocol), "evil.pkl")
        assert "\n" not in str(err.value)
    assert not marker.exists()


def test_object_arrays_and_broken_streams_are_refused():
    with pytest.raises(UserError, match="dtype"):
        read_pickle_data(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2), "t")
    with pytest.raises(UserError, match="malformed"):
        read_pickle_data(py2_pickle({b"a": [1, 2]})[:-6], "t")


# ------------------------------------------------------------------ download -> preprocess -> load
def _fake(monkeypatch, name, folder, archive, url="http://127.0.0.1:9/never"):
    monkeypatch.setitem(cifar.TORCHVISION, name, FakeTorchvisionCifar.for_folder(folder, archive, url))


def test_uses_torchvisions_own_constants():
    assert cifar.TORCHVISION == {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}
    assert cifar.CIFAR10_V.tv.tgz_md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar.CIFAR100_V.tv.url.endswith("cifar-100-python.tar.gz")


@pytest.mark.parametrize("name, py3", [("cifar10", False), ("cifar100", False), ("cifar10", True)])
def test_archive_source_preprocess_and_load(project, tmp_path, monkeypatch, name, py3):
    folder, truth = write_cifar(tmp_path / "src", name, per_class_train=3, per_class_test=1, py3=py3)
    archive = tar_gz(folder, tmp_path / f"{name}.tar.gz")
    _fake(monkeypatch, name, folder, archive)
    monkeypatch.setenv(f"OTJR_{name.upper()}_SOURCE", str(archive))
    api.download(name)
    api.preprocess(name)
    meta = load_meta(name)
    assert meta["num_classes"] == len(meta["classes"]) == (10 if name == "cifar10" else 100)
    assert meta["classes"][:2] == (["class0", "class1"] if name == "cifar10" else ["fine0", "fine1"])
    assert meta["shape"] == [3, 32, 32] and "resize" not in meta
    x, y = load_split(name, "test")
    ref_x, ref_y = truth["test"]
    assert torch.equal(y, torch.from_numpy(ref_y).long())
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(ref_x))
    sizes = meta["sizes"]
    assert sizes["train"] + sizes.get("val", 0) == len(truth["train"][1])
    assert set(meta["sources"]) >= {f"{folder.name}/{f}" for f, _ in cifar.TORCHVISION[name].train_list}


def test_http_download_resumes_and_checks_md5(project, tmp_path, monkeypatch):
    from test_data_fetch import Server

    folder, _ = write_cifar(tmp_path / "src", "cifar10", per_class_train=2, per_class_test=1)
    archive = tar_gz(folder, tmp_path / "cifar-10-python.tar.gz")
    server = Server(payload=archive.read_bytes())
    try:
        _fake(monkeypatch, "cifar10", folder, archive, url=server.url)
        part = paths.download_cache() / "cifar-10-python.tar.gz.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(archive.read_bytes()[:1000])  # an interrupted earlier download
        api.download("cifar10")
        assert server.requests == ["bytes=1000-"]
        assert (paths.raw_dir("cifar10") / "cifar-10-batches-py" / "data_batch_3").is_file()
    finally:
        server.close()


def test_folder_source_like_a_torchvision_root(project, tmp_path, monkeypatch):
    folder, truth = write_cifar(tmp_path / "tvroot", "cifar100", per_class_train=2, per_class_test=1)
    _fake(monkeypatch, "cifar100", folder, tar_gz(folder, tmp_path / "c.tar.gz"))
    from conftest import write_params

    write_params(project, {"data.sources": {"cifar100": str(tmp_path / "tvroot")}, "data.val_fraction": 0.0,
                           "train.eval_n": 0})
    api.download("cifar100")
    api.preprocess("cifar100")
    x, y = load_split("cifar100", "train")
    assert torch.equal(y, torch.from_numpy(truth["train"][1]).long())


def test_tampered_batch_is_caught(project, tmp_path, monkeypatch):
    folder, _ = write_cifar(tmp_path / "src", "cifar10", per_class_train=2, per_class_test=1)
    archive = tar_gz(folder, tmp_path / "c.tar.gz")
    _fake(monkeypatch, "cifar10", folder, archive)
    monkeypatch.setenv("OTJR_CIFAR10_SOURCE", str(archive))
    api.download("cifar10")
    batch = paths.raw_dir("cifar10") / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:-2] + b"\x00.")
    with pytest.raises(UserError, match="data_batch_2: md5"):
        api.preprocess("cifar10")
    (tmp_path / "c.tar.gz").write_bytes(b"corrupt")
    with pytest.raises(UserError, match="md5 differs"):
        api.download("cifar10")
