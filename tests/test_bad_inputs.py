"""A catalogue of bad inputs, each given to the command line of a small finished project.

Every case must end with exit code 2, exactly one line on stderr naming the key or the
file at fault, and `git status` of the project clean: no tracked result changed, deleted
or half-written, nothing new left beside them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from conftest import REPO, TINY, run_cli, set_dotted, write_params
from formats import write_intel

SETTINGS = {**TINY, "train.epochs": 2, "train.eval_n": 16, "model.args.width": 4, "attack.n": 16,
            "attack.suite": ["fgsm", "pgd20", "l2_pgd"]}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A project with digits downloaded, prepared, xe trained and attacked, all committed to git."""
    root = tmp_path_factory.mktemp("finished")
    write_params(root, SETTINGS)
    shutil.copyfile(REPO / ".gitignore", root / ".gitignore")
    for args in (["download"], ["preprocess"], ["train", "--method", "xe"], ["attack", "--method", "xe"]):
        run_cli("stage", args[0], "--dataset", "digits", *args[1:], cwd=root, check=True)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "finished")
    return root


# mutations: each breaks one input of the project `root` -------------------------------------
def _params(root: Path, **dotted) -> None:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    params = yaml.load((root / "params.yaml").read_text())
    for key, value in dotted.items():
        set_dotted(params, key.replace("__", "."), value)
    write_params(root, base=params)


def _append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _shard(root: Path, split: str) -> Path:
    return root / "data" / "prepared" / "digits" / f"{split}.safetensors"


def _set_label(path: Path, row: int, value: int) -> None:
    """Overwrite one int64 label in place, as a flipped byte on disk would."""
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    start = 8 + n + json.loads(data[8 : 8 + n])["labels"]["data_offsets"][0] + 8 * row
    data[start : start + 8] = struct.pack("<q", value)
    path.write_bytes(bytes(data))


def _drop_last_row(path: Path) -> None:
    """Rewrite a shard one image short, keeping its metadata (which still counts the dropped row)."""
    from safetensors import safe_open

    from pipeline.core.io import META_KEY, load_tensors, save_tensors

    tensors, _ = load_tensors(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = json.loads(f.metadata()[META_KEY])
    save_tensors(path, {k: v[:-1] for k, v in tensors.items()}, metadata)


def _checkpoint_meta(root: Path, change: Callable[[dict], None]) -> None:
    from pipeline.core.io import load_tensors, save_tensors

    path = root / "models" / "digits" / "xe.safetensors"
    tensors, metadata = load_tensors(path)
    change(metadata)
    save_tensors(path, tensors, metadata)


def _nest(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _intel_folder(root: Path) -> Path:
    """A tiny Intel-layout folder with a link to /etc/passwd among forest's images."""
    src = write_intel(root / "intel_src", per_class_train=1, per_class_test=1)
    (src / "seg_train" / "seg_train" / "forest" / "passwd.jpg").symlink_to("/etc/passwd")
    _params(root, data__sources__intel=str(src))
    return src


def _intel_zip(root: Path) -> None:
    """An Intel zip whose first deflate member has a corrupted stream (its header and CRC intact)."""
    path = root / "intel.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("seg_train/forest/0.jpg", b"not really a jpeg " * 200)
    data = bytearray(path.read_bytes())
    (name_len, extra_len) = struct.unpack("<HH", data[26:30])
    data[30 + name_len + extra_len] = 0xFF  # BTYPE 11: an invalid deflate block
    path.write_bytes(bytes(data))
    _params(root, data__sources__intel=str(path))


def _hold_lock(root: Path) -> None:
    """A lock of the xe training held by a live process (this test's)."""
    from pipeline.core.lock import _boot_ticks

    lock = root / ".otjr" / "locks" / "train.digits.xe.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "ticks": _boot_ticks(os.getpid()),
                                "started": "2026-01-01T00:00:00+00:00"}))


def _unwritable(root: Path) -> None:
    os.chmod(root / "metrics" / "attacks" / "digits", 0o555)


TRAIN = ["stage", "train", "--dataset", "digits", "--method", "xe"]
ATTACK = ["stage", "attack", "--dataset", "digits", "--method", "xe"]
SANITY = ["stage", "sanity", "--dataset", "digits", "--method", "xe"]
CASES = {
    # params.yaml
    "params not UTF-8 (in a comment)": (lambda r: _append_bytes(r / "params.yaml", b"# caf\xe9\n"), ATTACK,
                                        ["params.yaml", "byte offset"]),
    "infinite eps": (lambda r: _params(r, attack__pgd20__eps=float("inf")), ATTACK, ["attack.pgd20.eps", "finite"]),
    "NaN learning rate": (lambda r: _params(r, train__lr=float("nan")), TRAIN, ["train.lr", "finite"]),
    "infinite model argument": (lambda r: _params(r, model__args__drop=float("inf")), TRAIN,
                                ["model.args.drop", "finite"]),
    "L-inf eps above 1": (lambda r: _params(r, attack__pgd20__eps=2.0), ATTACK, ["attack.pgd20.eps", "at most 1"]),
    "L2 eps beyond the image diameter": (lambda r: _params(r, attack__l2_pgd__eps=9.0), ATTACK,
                                         ["attack.l2_pgd.eps", "diameter"]),
    "training adversary eps above 1": (lambda r: _params(r, adversary__eps=2.0), TRAIN, ["adversary.eps"]),
    "sanity sweep eps above 1": (lambda r: _params(r, sanity__eps_sweep=[0.1, 1.5]), SANITY, ["sanity.eps_sweep.1"]),
    # prepared data
    "truncated test shard": (lambda r: os.truncate(_shard(r, "test"), 20000), ATTACK,
                             ["test.safetensors", "truncated"]),
    "training label 127": (lambda r: _set_label(_shard(r, "train"), 0, 127), TRAIN,
                           ["train.safetensors", "label 127"]),
    "test label -5": (lambda r: _set_label(_shard(r, "test"), 3, -5), ATTACK, ["test.safetensors", "label -5"]),
    "shard shorter than its metadata": (lambda r: _drop_last_row(_shard(r, "test")), ATTACK,
                                        ["test.safetensors", "metadata says"]),
    "shard header not a safetensors header": (lambda r: _shard(r, "val").write_bytes(b"\xff" * 64), TRAIN,
                                              ["val.safetensors"]),
    "raw data removed before preprocess": (lambda r: shutil.rmtree(r / "data" / "raw"),
                                           ["stage", "preprocess", "--dataset", "digits"], ["data/raw/digits"]),
    # user-supplied sources
    "symlink in a folder source": (_intel_folder, ["stage", "download", "--dataset", "intel"],
                                   ["passwd.jpg", "symbolic link"]),
    "corrupted deflate member in a zip source": (_intel_zip, ["stage", "download", "--dataset", "intel"],
                                                 ["intel.zip", "seg_train/forest/0.jpg", "damaged"]),
    # checkpoint metadata
    "checkpoint mean not a number": (lambda r: _checkpoint_meta(r, lambda m: m["model"].update(mean=["x"])), ATTACK,
                                     ["xe.safetensors", "model.mean.0"]),
    "checkpoint channel count off": (lambda r: _checkpoint_meta(r, lambda m: m["model"].update(in_channels=3)),
                                     ATTACK, ["xe.safetensors", "per input channel"]),
    "checkpoint metadata nested too deep": (lambda r: _checkpoint_meta(r, lambda m: m.update(extra=_nest(40))),
                                            ATTACK, ["xe.safetensors", "nested"]),
    # outputs and concurrency
    "output folder in the way of a file": (lambda r: (r / "metrics" / "sanity").write_text("x"), SANITY,
                                           ["metrics/sanity", "cannot be written"]),
    "output folder read-only": (_unwritable, ATTACK, ["metrics/attacks/digits", "cannot be written"]),
    "the run is being trained by another process": (_hold_lock, TRAIN, [f"pid {os.getpid()}", "already running",
                                                                       socket.gethostname()]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(finished, tmp_path, case):
    mutate, args, fragments = CASES[case]
    if case == "output folder read-only" and os.geteuid() == 0:
        pytest.skip("root writes to read-only folders (the case 'output folder in the way of a file' covers root)")
    root = tmp_path / "project"
    shutil.copytree(finished, root, symlinks=True)
    mutate(root)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "bad input", "--allow-empty")
    proc = run_cli(*args, cwd=root)
    os.chmod(root / "metrics" / "attacks" / "digits", 0o755)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert _git(root, "status", "--porcelain", "--untracked-files=all") == ""
