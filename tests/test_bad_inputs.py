"""A catalogue of bad inputs, each given to the command line of a small finished project.

Every case must end with exit code 2, exactly one line on stderr naming the key or the
file at fault, and `git status` of the project clean: no tracked result changed, deleted
or half-written, nothing new left beside them. The params cases run under DVC too: in a
project `dvc repro` finished, `dvc repro` and `dvc exp run -S` stop at the `params` stage,
before DVC deletes any output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from conftest import REPO, TINY, run_cli, set_dotted, write_params
from dvc_project import dvc, git, reproduced  # noqa: F401 (a fixture)
from formats import write_intel

SETTINGS = {**TINY, "train.epochs": 2, "train.eval_n": 16, "model.args.width": 4, "attack.n": 16,
            "attack.suite": ["fgsm", "pgd20", "l2_pgd"]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A project with digits downloaded, prepared, xe trained and attacked, all committed to git."""
    root = tmp_path_factory.mktemp("finished")
    write_params(root, SETTINGS)
    shutil.copyfile(REPO / ".gitignore", root / ".gitignore")
    for args in (["download"], ["preprocess"], ["train", "--method", "xe"], ["attack", "--method", "xe"]):
        run_cli("stage", args[0], "--dataset", "digits", *args[1:], cwd=root, check=True)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "finished")
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


def _nan_weights(root: Path) -> None:
    """One weight NaN, as a diverged training leaves them."""
    from pipeline.core.io import load_tensors, save_tensors

    path = root / "models" / "digits" / "xe.safetensors"
    tensors, metadata = load_tensors(path)
    name = next(k for k, v in tensors.items() if k.endswith("weight") and v.is_floating_point())
    tensors[name].view(-1)[0] = float("nan")
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


def _duplicate_key(root: Path) -> None:
    with open(root / "params.yaml", "a") as f:
        f.write("seed: 3\n")


def _linked_params(root: Path) -> None:
    """params.yaml a symbolic link to a file outside the project whose first line is a secret."""
    secret = root.parent / f"{root.name}-secret.txt"
    secret.write_text("hunter2: the secret\n" + (root / "params.yaml").read_text())
    (root / "params.yaml").unlink()
    (root / "params.yaml").symlink_to(secret)


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
    "zero epochs": (lambda r: _params(r, train__epochs=0), TRAIN, ["train.epochs", "(got 0)"]),
    # a stage checks the blocks it reads; the whole file (every key known) is the params stage's, DVC's first
    "a key with a non-ASCII letter": (lambda r: _params(r, λ_j=0.01), ["stage", "params"], ["unknown key 'λ_j'"]),
    "duplicate key": (_duplicate_key, ATTACK, ["params.yaml", "duplicate key 'seed'"]),
    "params.yaml a symbolic link": (_linked_params, ATTACK, ["params.yaml", "symbolic link"]),
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
    "checkpoint weights NaN": (_nan_weights, ATTACK, ["xe.safetensors", "weights not finite", "NaN"]),
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
    git(root, "add", "-A")
    git(root, "commit", "-qm", "bad input", "--allow-empty")
    proc = run_cli(*args, cwd=root)
    os.chmod(root / "metrics" / "attacks" / "digits", 0o755)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert git(root, "status", "--porcelain", "--untracked-files=all") == ""


# ------------------------------------------------------------------ the params cases under DVC
PARAMS_CASES = [c for c in CASES if list(CASES).index(c) < list(CASES).index("truncated test shard")]
#: One params case of each kind under `dvc repro` (each costs a DVC run): a file DVC itself cannot read, a
#: key, a value, a budget checked against the prepared images, YAML, a link. That `otjr stage params` refuses
#: every params case is the test below; that DVC runs it before anything else, these.
DVC_CASES = ["params not UTF-8 (in a comment)", "a key with a non-ASCII letter", "zero epochs",
             "L2 eps beyond the image diameter", "duplicate key", "params.yaml a symbolic link"]
#: Params cases `dvc exp run -S` can express, as its -S argument (DVC's own grammar refuses `λ_j=...`).
#: The L2 budget through the threat block, where params.yaml states it (an instance's own `eps` is no key to set).
SET_CASES = {"zero epochs": "train.epochs=0", "L2 eps beyond the image diameter": "threat.l2=9.0"}


@pytest.mark.slow
@pytest.mark.parametrize("case", PARAMS_CASES)
def test_the_params_stage_refuses_every_params_case(finished, tmp_path, case):
    """`otjr stage params`, dvc.yaml's first stage, refuses each params case with the stage's own line."""
    mutate, _, fragments = CASES[case]
    root = tmp_path / "project"
    shutil.copytree(finished, root, symlinks=True)
    mutate(root)
    proc = run_cli("stage", "params", cwd=root)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert all(f in lines[0] for f in fragments), lines[0]


def _files(root: Path) -> dict[str, bytes]:
    """Every file of the project but git's and DVC's own bookkeeping, with its bytes."""
    skip = (".git", ".dvc", ".otjr")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.relative_to(root).parts[0] not in skip}


def _git_changes(root: Path) -> str:
    """`git status --porcelain`, every file re-hashed (DVC restores mtimes, which hides same-size edits from git)."""
    (root / ".git" / "index").unlink()
    git(root, "reset", "-q")
    return git(root, "status", "--porcelain", "--untracked-files=all")


def _assert_refused_at_params(proc: subprocess.CompletedProcess, case: str) -> None:
    """DVC failed having run no stage but `params`, which printed the case's one line; or DVC refused the file
    itself before running any stage (params.yaml not UTF-8: DVC reads it for the stages' params)."""
    assert proc.returncode != 0
    ran = re.findall(r"Running stage '([^']+)'", proc.stdout)
    assert ran in ([], ["params"]), proc.stdout
    if ran:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and all(f in errors[0] for f in CASES[case][2]), proc.stderr
    else:
        assert "params.yaml" in proc.stderr, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", DVC_CASES)
def test_bad_params_under_dvc_repro_delete_nothing(reproduced, tmp_path, case):
    """Each params case stops `dvc repro` at its first stage, `params`, with the stage's one line: every file
    (models, records, the always-run aggregate's summary) is as committed."""
    root = tmp_path / "project"
    shutil.copytree(reproduced, root, symlinks=True)
    CASES[case][0](root)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "bad params", "--allow-empty")
    before = _files(root)
    proc = dvc(root, "repro")
    _assert_refused_at_params(proc, case)
    assert "hunter2" not in proc.stdout + proc.stderr
    assert _files(root) == before
    assert _git_changes(root) == ""


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SET_CASES))
def test_bad_params_under_dvc_exp_run_delete_nothing(reproduced, tmp_path, case):
    """`dvc exp run -S key=bad` stops at `params` too; DVC leaves its edit in params.yaml (as after a run that
    succeeds), the one file changed: `git checkout params.yaml` is the whole way back."""
    root = tmp_path / "project"
    shutil.copytree(reproduced, root, symlinks=True)
    before = _files(root)
    _assert_refused_at_params(dvc(root, "exp", "run", "-S", SET_CASES[case]), case)
    after = _files(root)
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == {"params.yaml"}
    assert _git_changes(root) == " M params.yaml\n"
