"""Atomic writes: every artifact appears complete or not at all (temp file + rename)."""

from __future__ import annotations

import contextlib
import json
import os
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
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path, *, what: str = "file") -> Any:
    """Parse a JSON file; a missing or broken file is one clear `UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None


#: safetensors header key holding our metadata as one JSON string. One key, because the
#: header's key order is not stable and byte-identical files keep DVC's cache effective.
META_KEY = "otjr"


def save_tensors(path: Path, tensors: dict, metadata: dict[str, Any] | None = None) -> None:
    """Write a safetensors file atomically and byte-deterministically; `metadata` is JSON-able."""
    from safetensors.torch import save_file

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {META_KEY: json.dumps(metadata or {}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=header)


def load_tensors(path: Path, *, what: str = "file") -> tuple[dict, dict[str, Any]]:
    """Read a safetensors file (tensors, our metadata; {} for foreign files); one clear line on failure."""
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
    except ValueError:
        metadata = {}
    return tensors, metadata if isinstance(metadata, dict) else {}
