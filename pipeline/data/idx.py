"""The IDX format (LeCun's MNIST files, Fashion-MNIST's too), read with its header checked first.

An IDX file is big-endian: two zero bytes, a type byte (only 0x08, unsigned byte, is read
here), a byte with the number of dimensions, one uint32 per dimension, then exactly the
product of the dimensions in bytes. The file may be gzip-compressed (recognised by its
magic bytes, not its name). The header is validated before any data is read, and the data
must be exactly as long as the header says: a truncated, over-long or foreign file is one
UserError naming it.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..core.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
UNSIGNED_BYTE = 0x08
TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int", 0x0D: "float", 0x0E: "double"}
MAX_BYTES = 1 << 31  # no IDX file we read comes close (MNIST's largest is 47 MB)


@dataclass(frozen=True)
class IdxArray:
    """The array an IDX file holds, and digests of its (decompressed) content for provenance checks."""

    array: np.ndarray
    sha256: str
    md5: str


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def parse_header(head: bytes, where: str) -> tuple[int, ...]:
    """The dimensions an IDX header declares; anything but an unsigned-byte IDX header is refused."""
    if len(head) < 4 or head[:2] != b"\x00\x00":
        magic = head[:4].hex() or "missing"
        raise UserError(f"{where}: not an IDX file (magic number {magic}, expected 0000 08 <ndim>)")
    kind, ndim = head[2], head[3]
    if kind != UNSIGNED_BYTE:
        name = TYPE_NAMES.get(kind, "unknown")
        raise UserError(f"{where}: IDX data type 0x{kind:02x} ({name}) is not supported; expected 0x08 (unsigned byte)")
    if ndim == 0:
        raise UserError(f"{where}: IDX header declares 0 dimensions")
    if len(head) < 4 + 4 * ndim:
        raise UserError(f"{where}: truncated IDX header ({len(head)} bytes, {ndim} dimensions need {4 + 4 * ndim})")
    return struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])


def read_idx(path: Path) -> IdxArray:
    """The uint8 array of an IDX file (plain or gzip), after checking its header against its length."""
    path = Path(path)
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) == 4 and head[:2] == b"\x00\x00":
                head += f.read(4 * head[3])
            dims = parse_header(head, str(path))
            expected = math.prod(dims)
            if expected > MAX_BYTES:
                raise UserError(f"{path}: IDX header declares {dims} = {expected} bytes; refused (over {MAX_BYTES})")
            if not is_gzip(path) and path.stat().st_size != len(head) + expected:
                have = path.stat().st_size - len(head)
                raise UserError(f"{path}: IDX header declares {dims} = {expected} data bytes, the file holds {have}; "
                                "truncated or not this format")
            data = f.read(expected)
            extra = f.read(1)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path}: damaged or truncated file ({err})") from None
    if len(data) != expected or extra:
        have = f"{len(data)}" if len(data) != expected else f"more than {expected}"
        raise UserError(f"{path}: IDX header declares {dims} = {expected} data bytes, the file holds {have}; "
                        "truncated or not this format")
    content = head + data
    array = np.frombuffer(data, dtype=np.uint8).reshape(dims)
    return IdxArray(array, hashlib.sha256(content).hexdigest(), hashlib.md5(content).hexdigest())

