"""Writers of small files in each dataset's real on-disk format (for the data tests).

- CIFAR python version: `cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta`
  (CIFAR-100: `cifar-100-python/train, test, meta`), each a pickled dict as Python 2's
  cPickle wrote them (protocol 2, numpy arrays via numpy.core.multiarray._reconstruct,
  str as SHORT_BINSTRING/BINSTRING), emitted opcode by opcode below; packed as the
  published .tar.gz. `py3=True` uses Python 3's own pickler (protocol 2) instead.
- Intel: Kaggle's archive layout `seg_train/seg_train/<class>/*.jpg`, `seg_test/...`,
  `seg_pred/seg_pred/*.jpg`, as a folder or a zip.
- ImageNet: `train/<wnid>/<wnid>_<i>.JPEG`, `val/<wnid>/ILSVRC2012_val_*.JPEG`, or
  Kaggle's `ILSVRC/Data/CLS-LOC/{train,val}` with a flat val and `LOC_val_solution.csv`.
- MNIST / Fashion-MNIST: the four IDX files (`train-images-idx3-ubyte` ...), gzipped or not.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


# ---------------------------------------------------------------------------- CIFAR
class _Py2Pickler:
    """Emits the protocol-2 stream Python 2's cPickle produces for dicts, lists, str, int, ndarray."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo = 0

    def put(self):
        self.out += b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo)
        self.memo += 1

    def int_(self, v: int):
        if 0 <= v < 256:
            self.out += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.out += b"M" + struct.pack("<H", v)
        else:
            self.out += b"J" + struct.pack("<i", v)

    def str_(self, b: bytes):
        self.out += (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b
        self.put()

    def dump(self, o):
        if isinstance(o, dict):
            self.out += b"}"
            self.put()
            self.out += b"("
            for k, v in o.items():
                self.dump(k)
                self.dump(v)
            self.out += b"u"
        elif isinstance(o, list):
            self.out += b"]"
            self.put()
            for i in range(0, len(o), 1000):  # cPickle appends in batches of 1000
                self.out += b"("
                for x in o[i : i + 1000]:
                    self.dump(x)
                self.out += b"e"
        elif isinstance(o, bytes):
            self.str_(o)
        elif isinstance(o, (int, np.integer)):
            self.int_(int(o))
        elif isinstance(o, np.ndarray):
            self.out += b"cnumpy.core.multiarray\n_reconstruct\n"
            self.put()
            self.out += b"cnumpy\nndarray\n"
            self.put()
            self.out += b"K\x00\x85"
            self.put()
            self.str_(b"b")
            self.out += b"\x87"
            self.put()
            self.out += b"R"
            self.put()
            self.out += b"("
            self.int_(1)
            for n in o.shape:
                self.int_(n)
            self.out += b"\x86" if o.ndim == 2 else b"\x85"
            self.put()
            self.out += b"cnumpy\ndtype\n"
            self.put()
            self.str_(o.dtype.str[1:].encode())
            self.int_(0)
            self.int_(1)
            self.out += b"\x87"
            self.put()
            self.out += b"R"
            self.put()
            self.out += b"("
            self.int_(3)
            self.str_(b"|" if o.dtype.itemsize == 1 else b"<")
            self.out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
            self.put()
            self.out += b"b\x89"  # BUILD the dtype; not Fortran order
            self.str_(np.ascontiguousarray(o).tobytes())
            self.out += b"t"
            self.put()
            self.out += b"b"
        else:
            raise TypeError(type(o))

    def result(self) -> bytes:
        return bytes(self.out) + b"."


def py2_pickle(obj) -> bytes:
    p = _Py2Pickler()
    p.dump(obj)
    return p.result()


def _text(obj, py3: bool):
    """Python 2 str (bytes) throughout, or Python 3 str, as each pickler would see CIFAR's dicts."""
    if isinstance(obj, dict):
        return {_text(k, py3): _text(v, py3) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_text(v, py3) for v in obj]
    if isinstance(obj, str):
        return obj if py3 else obj.encode()
    return obj


def _dump(obj, py3: bool) -> bytes:
    return pickle.dumps(_text(obj, True), protocol=2) if py3 else py2_pickle(_text(obj, False))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(root: Path, which: str, per_class_train: int, per_class_test: int, seed: int = 0, py3: bool = False):
    """CIFAR-10/100 python-version files under root/<base_folder>; returns (folder, truth) with
    truth[split] = (uint8 images N x 3 x 32 x 32, int labels) in file order."""
    rng = np.random.default_rng(seed)
    ten = which == "cifar10"
    classes = 10 if ten else 100
    base = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    base.mkdir(parents=True, exist_ok=True)
    truth = {}
    for split, per in (("train", per_class_train), ("test", per_class_test)):
        labels = np.repeat(np.arange(classes), per)
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
        truth[split] = (images, labels)
    if ten:
        x, y = truth["train"]
        for b, (xs, ys) in enumerate(zip(np.array_split(x, 5), np.array_split(y, 5)), start=1):
            batch = {"batch_label": f"training batch {b} of 5", "labels": [int(v) for v in ys],
                     "data": xs.reshape(len(xs), -1), "filenames": [f"img_{b}_{i}.png" for i in range(len(xs))]}
            (base / f"data_batch_{b}").write_bytes(_dump(batch, py3))
        x, y = truth["test"]
        test = {"batch_label": "testing batch 1 of 1", "labels": [int(v) for v in y],
                "data": x.reshape(len(x), -1), "filenames": [f"t_{i}.png" for i in range(len(x))]}
        (base / "test_batch").write_bytes(_dump(test, py3))
        meta = {"num_cases_per_batch": 10000, "label_names": [f"class{c}" for c in range(10)], "num_vis": 3072}
        (base / "batches.meta").write_bytes(_dump(meta, py3))
    else:
        for split, name in (("train", "train"), ("test", "test")):
            x, y = truth[split]
            d = {"filenames": [f"{split}_{i}.png" for i in range(len(y))], "batch_label": f"{split} batch",
                 "fine_labels": [int(v) for v in y], "coarse_labels": [int(v) // 5 for v in y],
                 "data": x.reshape(len(x), -1)}
            (base / name).write_bytes(_dump(d, py3))
        meta = {"fine_label_names": [f"fine{c}" for c in range(100)], "coarse_label_names": [f"coarse{c}" for c in range(20)]}
        (base / "meta").write_bytes(_dump(meta, py3))
    (base / "readme.html").write_text("<html></html>")
    return base, truth


def tar_gz(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return archive


class FakeTorchvisionCifar:
    """torchvision's CIFAR class attributes, for generated files (their md5s, a test URL)."""

    @classmethod
    def for_folder(cls, folder: Path, archive: Path, url: str):
        ten = folder.name == "cifar-10-batches-py"
        train = [f"data_batch_{i}" for i in range(1, 6)] if ten else ["train"]
        test = ["test_batch"] if ten else ["test"]
        meta = "batches.meta" if ten else "meta"
        return type("FakeCIFAR", (), {
            "url": url,
            "filename": archive.name,
            "tgz_md5": md5(archive),
            "base_folder": folder.name,
            "train_list": [[f, md5(folder / f)] for f in train],
            "test_list": [[f, md5(folder / f)] for f in test],
            "meta": {"filename": meta, "key": "label_names" if ten else "fine_label_names", "md5": md5(folder / meta)},
        })


# ---------------------------------------------------------------------------- images
def class_colour(label: int, classes: int) -> tuple[int, int, int]:
    hue = np.linspace(0, 255, classes, endpoint=False)[label]
    return int(hue), int(255 - hue), int((hue * 7) % 256)


def image_bytes(size: tuple[int, int], colour, fmt: str = "JPEG", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = np.clip(np.array(colour)[None, None, :] + rng.integers(-20, 21, size=(h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, quality=95)
    return buf.getvalue()


INTEL_CLASSES = ["buildings", "forest", "glacier", "mountain", "sea", "street"]


def write_intel(root: Path, per_class_train: int = 4, per_class_test: int = 2) -> Path:
    """Kaggle's unpacked layout under root (seg_train/seg_train/<class>/<n>.jpg ...); some images 150x113."""
    n = 0
    for split, per in (("seg_train", per_class_train), ("seg_test", per_class_test)):
        for label, name in enumerate(INTEL_CLASSES):
            folder = root / split / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per):
                size = (150, 113) if i == 1 else (150, 150)
                (folder / f"{1000 + n}.jpg").write_bytes(image_bytes(size, class_colour(label, 6), seed=n))
                n += 1
    pred = root / "seg_pred" / "seg_pred"
    pred.mkdir(parents=True, exist_ok=True)
    (pred / "5.jpg").write_bytes(image_bytes((150, 150), (0, 0, 0)))
    return root


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return archive


def write_imagenet(root: Path, wnids: list[str], per_class_train: int = 2, per_class_val: int = 1,
                   kaggle: bool = False, extra: tuple[str, ...] = ("n99999999",)) -> Path:
    """An ILSVRC-2012-style tree with the given classes (plus `extra` classes outside the subset)."""
    base = root / "ILSVRC" / "Data" / "CLS-LOC" if kaggle else root
    rows = []
    n = 0
    for label, wnid in enumerate([*wnids, *extra]):
        colour = class_colour(label % len(wnids), len(wnids))
        train = base / "train" / wnid
        train.mkdir(parents=True, exist_ok=True)
        for i in range(per_class_train):
            (train / f"{wnid}_{i}.JPEG").write_bytes(image_bytes((40, 30), colour, seed=n))
            n += 1
        val = base / "val" if kaggle else base / "val" / wnid
        val.mkdir(parents=True, exist_ok=True)
        for i in range(per_class_val):
            name = f"ILSVRC2012_val_{n:08d}"
            (val / f"{name}.JPEG").write_bytes(image_bytes((30, 40), colour, seed=n))
            rows.append(f"{name},{wnid} 1 2 20 30 {wnid} 3 4 10 12")
            n += 1
    if kaggle:
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    return root


# ---------------------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """LeCun's layout: 0x00 0x00, type, ndim, big-endian uint32 dims, then the raw bytes."""
    header = b"\x00\x00" + bytes([type_byte, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_idx_set(folder: Path, train: int = 30, test: int = 10, gz: bool = True, seed: int = 0) -> dict:
    """The four IDX files of an MNIST-style set under folder; returns {split: (images N x 28 x 28, labels)}
    and, under 'content', the decompressed bytes of each file by name (without .gz)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth, content = {}, {}
    for split, n in (("train", train), ("test", test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        truth[split] = (images, labels)
        for base, array in zip(IDX_FILES[split], (images, labels)):
            content[base] = idx_bytes(array)
            path = folder / (f"{base}.gz" if gz else base)
            path.write_bytes(gzip.compress(content[base], mtime=0) if gz else content[base])
    truth["content"] = content
    return truth
