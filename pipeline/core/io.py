"""Atomic writes: every artifact appears complete or not at all (temp file + rename).

Files get the permissions a plain `open` would give (0666 minus the umask, 0644 usually),
as DVC's outputs have, not mkstemp's 0600.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # after the writer: some (safetensors) recreate the file as 0600
        os.replace(tmp, path)
    except Exception as err:
        if disk_full(err):  # the old file stays; the partial one goes below
            raise UserError(f"{path}: cannot be written: no space left on device; free some and re-run") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def disk_full(err: BaseException) -> bool:
    """Whether `err` is a full disk or quota: an OSError, or a writer's error (safetensors') that wraps one."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return f"(os error {errno.ENOSPC})" in str(err) or f"(os error {errno.EDQUOT})" in str(err)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(*outputs: Path) -> None:
    """Raise `UserError` unless every output (a file or a folder) can be written, before any work starts.

    Probes by creating a temp file in the output's folder (and inside a folder output that
    exists), so it tells the truth for root, read-only mounts and a file in the way alike.
    """
    for out in map(Path, outputs):
        folders = [out.parent] + ([out] if out.is_dir() else [])
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, probe = tempfile.mkstemp(dir=folder, prefix=".otjr-write-probe.")
                os.close(fd)
                os.unlink(probe)
            except OSError as err:
                raise UserError(f"{folder}: output folder cannot be written ({err.strerror or err})") from None


def read_text(path: Path, *, what: str = "file") -> str:
    """A UTF-8 text file; a missing file or a byte that is not UTF-8 is one line naming the file (and byte offset)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at byte offset {err.start}); "
                        "save it as UTF-8") from None


def tree_digest(folder: Path) -> str | None:
    """sha256 over the relative paths and contents of every file under `folder` (None if absent)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _beside(src: Path, dest: Path) -> Path:
    """`src` itself if it can be renamed to `dest`; else a copy of it next to `dest` (another filesystem)."""
    if os.stat(src).st_dev == os.stat(dest.parent).st_dev:
        return src
    near = dest.with_name(f".{dest.name}.incoming")
    if near.is_dir():
        shutil.rmtree(near)
    (shutil.copytree if src.is_dir() else shutil.copyfile)(src, near)
    return near


def move_file(src: Path, dest: Path) -> None:
    """Rename file `src` over `dest` atomically (via a copy beside `dest` when on another filesystem)."""
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    near = _beside(src, dest)
    os.replace(near, dest)
    if near != src:
        src.unlink()


def swap_in(new: Path, final: Path) -> None:
    """Put folder `new` at `final`, replacing what is there: one atomic exchange where the OS has it.

    Elsewhere two renames; a kill between them leaves `final` absent and `new` in place, which
    calling this again completes.
    """
    new, final = Path(new), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    near = _beside(new, final)
    if not final.exists():
        os.replace(near, final)
    elif _exchange(near, final):
        shutil.rmtree(near)  # now holds the previous contents
    else:
        old = near.with_name(near.name + ".previous")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(near, final)
        shutil.rmtree(old)
    if near != new:
        shutil.rmtree(new)  # the original of the copy, kept until the copy was in place


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path, *, what: str = "file") -> Any:
    """Parse a JSON file; a missing or broken file is one clear `UserError`."""
    path = Path(path)
    text = read_text(path, what=what)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None


#: safetensors header key holding our metadata as one JSON string. One key, because the
#: header's key order is not stable and byte-identical files keep DVC's cache effective.
META_KEY = "otjr"


def save_tensors(path: Path, tensors: dict, metadata: dict[str, Any] | None = None) -> None:
    """Write a safetensors file atomically and byte-deterministically; `metadata` is JSON-able."""
    from safetensors.torch import save_file  # imports torch: only the stages that write tensors pay for it

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {META_KEY: json.dumps(metadata or {}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=header)


def load_tensors(path: Path, *, what: str = "file") -> tuple[dict, dict[str, Any]]:
    """Read a safetensors file (tensors, our metadata; {} for foreign files); one clear line on failure."""
    # safetensors.torch imports torch: only the stages that read tensors pay for it
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable safetensors {what} ({err})") from None
    try:
        metadata = json.loads(header.get(META_KEY, "{}"))
    except (ValueError, RecursionError):
        metadata = {}
    return tensors, metadata if isinstance(metadata, dict) else {}
