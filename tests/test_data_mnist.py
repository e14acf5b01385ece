"""The IDX reader and MNIST / Fashion-MNIST from generated IDX files: header checks, broken and foreign files,
local copies checked by their decompressed content, downloads through torchvision's mirrors and md5s."""

from __future__ import annotations

import functools
import gzip
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from conftest import TINY, write_params
from formats import IDX_FILES, idx_bytes, write_idx_set
from pipeline import api
from pipeline.core.errors import UserError
from pipeline.data import load_meta, load_split, mnist
from pipeline.data.idx import read_idx

NAMES = {"fashion_mnist": mnist.FASHION, "mnist": mnist.MNIST}


# ------------------------------------------------------------------ the IDX reader
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(7,), (5, 28, 28), (2, 3, 4, 5)])
def test_idx_round_trip_plain_and_gzip(tmp_path, gz, shape):
    array = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    content = idx_bytes(array)
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(content) if gz else content)
    parsed = read_idx(path)
    assert parsed.array.dtype == np.uint8 and np.array_equal(parsed.array, array)
    assert parsed.sha256 == hashlib.sha256(content).hexdigest() and parsed.md5 == hashlib.md5(content).hexdigest()


def _broken_cases() -> dict[str, tuple[bytes, str]]:
    good = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    return {
        "wrong magic": (b"\x01\x00" + good[2:], "not an IDX file"),
        "foreign file (PNG)": (b"\x89PNG\r\n\x1a\n" + bytes(100), "not an IDX file"),
        "empty file": (b"", "not an IDX file"),
        "float data": (idx_bytes(np.zeros(3, dtype=np.uint8), type_byte=0x0D), r"0x0d \(float\) is not supported"),
        "zero dimensions": (b"\x00\x00\x08\x00", "0 dimensions"),
        "truncated header": (good[:10], "truncated IDX header"),
        "truncated data": (good[:-1], "declares"),
        "trailing bytes": (good + b"\x00", "declares"),
        "absurd dimensions": (b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3, "refused"),
    }


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", sorted(_broken_cases()))
def test_broken_or_foreign_files_give_one_line_naming_them(tmp_path, case, gz):
    data, message = _broken_cases()[case]
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(UserError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_or_damaged_gzip_stream(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(4000, dtype=np.uint32).astype(np.uint8)))
    for name, data in (("cut", packed[: len(packed) // 2]), ("bad crc", packed[:-8] + bytes(8))):
        path = tmp_path / f"{name}.gz"
        path.write_bytes(data)
        with pytest.raises(UserError, match="damaged or truncated") as err:
            read_idx(path)
        assert str(path) in str(err.value)


def test_header_is_checked_against_the_file_size_before_the_data_is_read(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"\x00\x00\x08\x03" + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(64))
    with pytest.raises(UserError, match=r"declares \(60000, 28, 28\) = 47040000 data bytes, the file holds 64"):
        read_idx(path)


# ------------------------------------------------------------------ datasets from generated files
def fake_torchvision(folder: Path, mirrors: list[str], classes: list[str]) -> type:
    """torchvision's MNIST class attributes for generated files: their .gz md5s, test mirrors."""
    resources = [(f"{b}.gz", hashlib.md5((folder / f"{b}.gz").read_bytes()).hexdigest())
                 for pair in IDX_FILES.values() for b in pair]
    return type("FakeMNIST", (), {"mirrors": mirrors, "resources": resources, "classes": classes})


@pytest.fixture
def generated(tmp_path, monkeypatch, request):
    """Generated IDX files for the dataset `request.param`, torchvision's constants and the published content
    digests replaced by theirs, and no system copy."""
    name = request.param
    variant = NAMES[name]
    truth = write_idx_set(tmp_path / "src", train=30, test=10)
    monkeypatch.setitem(mnist.TORCHVISION, name, fake_torchvision(tmp_path / "src", ["http://127.0.0.1:9/"],
                                                                  [f"c{i}" for i in range(10)]))
    kind = next(iter(variant.content.values()))[0]
    for base, data in truth["content"].items():
        monkeypatch.setitem(variant.content, base, (kind, hashlib.new(kind, data).hexdigest()))
    monkeypatch.setattr(mnist, "SYSTEM_COPIES", {})
    return name, tmp_path / "src", truth


def _download_preprocess_check(name, truth):
    api.download(name)
    api.preprocess(name)
    _assert_prepared(name, truth)


def _assert_prepared(name, truth):
    x, y = load_split(name, "test")
    images, labels = truth["test"]
    assert x.shape == (len(labels), 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal((x * 255).round().to(torch.uint8)[:, 0], torch.from_numpy(images))
    assert y.tolist() == labels.tolist()
    meta = load_meta(name)
    assert meta["classes"] == [f"c{i}" for i in range(10)] and meta["shape"] == [1, 28, 28]
    assert meta["sources"] == {b: hashlib.sha256(d).hexdigest() for b, d in truth["content"].items()}
    assert sum(meta["sizes"].values()) == 40


both = pytest.mark.parametrize("generated", ["fashion_mnist", "mnist"], indirect=True)


@both
@pytest.mark.parametrize("how", ["source", "env", "system"])
def test_local_copy_download_preprocess_load(project, generated, monkeypatch, how):
    name, src, truth = generated
    if how == "source":
        api_source = {"data.sources": {name: str(src)}}
    else:
        api_source = {}
        if how == "env":
            monkeypatch.setenv(f"OTJR_{name.upper()}_SOURCE", str(src))
        else:
            monkeypatch.setattr(mnist, "SYSTEM_COPIES", {name: src})
    write_params(project, {**TINY, **api_source})
    _download_preprocess_check(name, truth)


@both
def test_recompressed_and_plain_copies_are_checked_by_their_content(project, generated, monkeypatch, tmp_path):
    """Debian's trap: a re-compressed .gz has another md5 than torchvision's but the published content."""
    name, src, truth = generated
    copy = tmp_path / "copy"
    copy.mkdir()
    for k, (base, data) in enumerate(truth["content"].items()):
        if k % 2:
            (copy / base).write_bytes(data)
        else:
            (copy / f"{base}.gz").write_bytes(gzip.compress(data, compresslevel=1, mtime=12345))
            assert hashlib.md5((copy / f"{base}.gz").read_bytes()).hexdigest() != NAMES[name].md5_of_gz(base)
    monkeypatch.setenv(f"OTJR_{name.upper()}_SOURCE", str(copy))
    _download_preprocess_check(name, truth)


@both
def test_torchvision_root_is_accepted(project, generated, monkeypatch, tmp_path):
    name, src, truth = generated
    raw = tmp_path / "tvroot" / NAMES[name].tv_name / "raw"
    raw.parent.mkdir(parents=True)
    src.rename(raw)
    monkeypatch.setenv(f"OTJR_{name.upper()}_SOURCE", str(tmp_path / "tvroot"))
    _download_preprocess_check(name, truth)


@both
def test_a_local_copy_with_other_content_is_refused_naming_the_file(project, generated, monkeypatch):
    name, src, truth = generated
    images, _ = truth["test"]
    other = images.copy()
    other[0, 0, 0] ^= 1
    (src / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(other)))
    monkeypatch.setenv(f"OTJR_{name.upper()}_SOURCE", str(src))
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz: decompressed content has .* not the published"):
        api.download(name)


@both
def test_missing_files_and_non_folders_are_named(project, generated, monkeypatch):
    name, src, _ = generated
    (src / "train-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv(f"OTJR_{name.upper()}_SOURCE", str(src))
    with pytest.raises(UserError, match="train-labels-idx1-ubyte .*missing"):
        api.download(name)
    monkeypatch.setenv(f"OTJR_{name.upper()}_SOURCE", str(src / "train-images-idx3-ubyte.gz"))
    with pytest.raises(UserError, match="expected a folder"):
        api.download(name)


@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server for a folder (no Range support: fetch restarts such downloads)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@both
def test_download_tries_torchvisions_mirrors_in_turn_and_checks_their_md5(project, generated, http_folder, monkeypatch):
    name, src, truth = generated
    served, url = http_folder
    for path in src.iterdir():
        (served / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(mnist.TORCHVISION[name], "mirrors", ["http://127.0.0.1:9/", url])
    _download_preprocess_check(name, truth)

    # a re-compressed file on the mirror: same content, another md5 than torchvision's -> refused
    base = "t10k-labels-idx1-ubyte"
    (served / f"{base}.gz").write_bytes(gzip.compress(truth["content"][base], compresslevel=1, mtime=7))
    for cached in (project / "data" / "downloads" / name).iterdir():
        cached.unlink()
    with pytest.raises(UserError, match=f"{base}.gz: downloaded file has md5") as err:
        api.download(name)
    assert f"data.sources.{name}" in str(err.value)


def test_uses_torchvisions_own_constants_and_the_published_content_digests():
    assert mnist.MNIST.tv is torchvision.datasets.MNIST and mnist.FASHION.tv is torchvision.datasets.FashionMNIST
    for v in (mnist.MNIST, mnist.FASHION):
        assert [f"{b}.gz" for pair in mnist.FILES.values() for b in pair] == [r[0] for r in v.tv.resources]
        assert v.md5_of_gz("train-images-idx3-ubyte") == dict(v.tv.resources)["train-images-idx3-ubyte.gz"]
        assert set(v.content) == {b for pair in mnist.FILES.values() for b in pair}
    assert {k for k, _ in mnist.FASHION.content.values()} == {"sha256"}
    assert {k for k, _ in mnist.MNIST.content.values()} == {"md5"}
