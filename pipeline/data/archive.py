"""Safe extraction of tar and zip archives: every member lands inside the target directory.

Refused, with one line naming the archive and the member: absolute names, `..` components,
backslashes or NUL in names, links of any kind (symbolic or hard; a link that points
outside the target is named as such) and special files (devices, FIFOs). Sizes are
counted while bytes are written, not read from the headers, so a zip bomb stops at
`max_bytes`. Extraction goes to a staging directory that replaces `target` only when
every member was extracted, so a refused archive leaves nothing behind.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

from ..core.errors import UserError
from ..core.progress import progress

CHUNK = 1 << 20


def member_path(archive: Path, name: str) -> Path | None:
    """The relative path a member may be written to (None for the archive root itself)."""
    if "\x00" in name or "\\" in name:
        raise UserError(f"{archive}: member {name!r} has a NUL or backslash in its name; refused")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"{archive}: member {name!r} has an absolute path; refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UserError(f"{archive}: member {name!r} climbs out of the target with '..'; refused")
    return Path(*parts) if parts else None


def _link_escapes(name: str, link_target: str) -> bool:
    if link_target.startswith("/"):
        return True
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), link_target))
    return joined == ".." or joined.startswith("../")


def _refuse_link(archive: Path, name: str, link_target: str, hard: bool) -> None:
    kind = "hard link" if hard else "symbolic link"
    # A hard link's target is relative to the archive root, a symlink's to its own directory.
    escapes = _link_escapes("x" if hard else name, link_target)
    where = "outside the target" if escapes else "inside the archive"
    raise UserError(f"{archive}: member {name!r} is a {kind} to {link_target!r} ({where}); links are refused")


class _Budget:
    """Counts extracted bytes and members against the limits."""

    def __init__(self, archive: Path, max_bytes: int, max_members: int):
        self.archive, self.max_bytes, self.max_members = archive, max_bytes, max_members
        self.bytes = self.members = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise UserError(f"{self.archive}: more than {self.max_members} members; refused (size limit)")

    def copy(self, src: BinaryIO, dest: Path, advance: Callable[[int], None]) -> None:
        with open(dest, "xb") as out:
            while block := src.read(CHUNK):
                self.bytes += len(block)
                if self.bytes > self.max_bytes:
                    raise UserError(f"{self.archive}: extracts to more than {self.max_bytes} bytes; refused (size limit)")
                out.write(block)
                advance(len(block))


def _inside(root: Path, dest: Path) -> bool:
    return os.path.realpath(dest).startswith(os.path.realpath(root) + os.sep)


def _write_file(archive: Path, root: Path, rel: Path, src: BinaryIO, budget: _Budget, advance) -> None:
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not _inside(root, dest):
        raise UserError(f"{archive}: member {str(rel)!r} would be written outside the target; refused")
    if dest.exists():
        dest.unlink()  # a repeated member replaces the earlier one, as tar does
    budget.copy(src, dest, advance)


def _extract_tar(archive: Path, root: Path, keep, budget: _Budget, advance) -> None:
    with tarfile.open(archive, "r:*") as tf:
        for m in tf:
            rel = member_path(archive, m.name)
            if m.issym() or m.islnk():
                _refuse_link(archive, m.name, m.linkname, hard=m.islnk())
            if not (m.isdir() or m.isreg()):
                raise UserError(f"{archive}: member {m.name!r} is a special file; refused")
            budget.member()
            if rel is None or not keep(rel):
                continue
            if m.isdir():
                (root / rel).mkdir(parents=True, exist_ok=True)
                continue
            src = tf.extractfile(m)
            _write_file(archive, root, rel, src, budget, advance)


def _extract_zip(archive: Path, root: Path, keep, budget: _Budget, advance) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = member_path(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                with zf.open(info) as src:  # a zip symlink stores its target as the member's content
                    _refuse_link(archive, info.filename, src.read(4096).decode("utf-8", "replace"), hard=False)
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no Unix type recorded
                raise UserError(f"{archive}: member {info.filename!r} is a special file; refused")
            budget.member()
            if rel is None or not keep(rel):
                continue
            if info.is_dir():
                (root / rel).mkdir(parents=True, exist_ok=True)
                continue
            try:
                with zf.open(info) as src:
                    _write_file(archive, root, rel, src, budget, advance)
            except zlib.error as err:  # a corrupted deflate stream
                raise UserError(f"{archive}: member {info.filename!r} is damaged ({err})") from None


def extract(
    archive: Path,
    target: Path,
    *,
    max_bytes: int,
    max_members: int = 2_000_000,
    keep: Callable[[Path], bool] = lambda rel: True,
    show_progress: bool | None = None,
) -> Path:
    """Extract `archive` (zip or any tar) into `target`, replacing it; only members for which `keep` is true."""
    archive, target = Path(archive), Path(target)
    if zipfile.is_zipfile(archive):
        extractor = _extract_zip
    elif tarfile.is_tarfile(archive):
        extractor = _extract_tar
    else:
        raise UserError(f"{archive}: not a zip or tar archive")
    staging = target.with_name(f".{target.name}.extracting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    budget = _Budget(archive, max_bytes, max_members)
    try:
        with progress(show_progress) as bar:
            task = bar.add_task(f"extract {archive.name}", total=None, info="")
            extractor(archive, staging, keep, budget, lambda n: bar.advance(task, n))
        shutil.rmtree(target, ignore_errors=True)
        staging.replace(target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise UserError(f"{archive}: damaged archive ({err})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
