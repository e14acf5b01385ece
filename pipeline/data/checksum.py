"""File checksums, recorded next to the data they vouch for."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..core.errors import UserError


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> str:
    """Return the file's sha256; a mismatch is one clear error naming the file."""
    got = sha256(path)
    if got != expected:
        raise UserError(f"{path}: checksum mismatch (sha256 {got}, expected {expected}); delete it and download again")
    return got
