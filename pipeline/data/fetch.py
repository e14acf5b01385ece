"""Resumable, verified downloads.

Bytes go to `<file>.part` and a rerun continues it with an HTTP Range request (a server
that ignores Range restarts it). The finished file is checked with torchvision's md5
helper against the published checksum before it is renamed into place; a resumed file
that fails the check is downloaded once more from scratch.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from ..core.errors import UserError
from ..core.progress import progress

CHUNK = 1 << 20
TIMEOUT_S = 60


def calculate_md5(path: Path) -> str:
    """torchvision's md5 helper (torchvision is imported on use: it costs ~1.6 s of start-up)."""
    from torchvision.datasets.utils import calculate_md5 as md5  # see above: on use only

    return md5(path)


def _instructions(url: str, dest: Path, md5: str) -> str:
    return f"fetch {url} (md5 {md5}) yourself and put it at {dest}"


def _stream(url: str, part: Path, show_progress: bool | None) -> None:
    """Append the missing bytes of `url` to `part` (or rewrite it if the server cannot resume)."""
    have = part.stat().st_size if part.exists() else 0
    from torchvision.datasets.utils import USER_AGENT  # torchvision costs ~1.6 s of start-up: on use only

    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to fetch: the part is complete (the checksum decides)
            return
        raise
    with response:
        resumed = have > 0 and response.status == 206
        length = response.length
        total = (have if resumed else 0) + length if length is not None else None
        with open(part, "ab" if resumed else "wb") as out, progress(show_progress) as bar:
            task = bar.add_task(f"download {part.name.removesuffix('.part')}", total=total,
                                completed=have if resumed else 0, info="")
            while block := response.read(CHUNK):
                out.write(block)
                bar.advance(task, len(block))


def fetch(url: str, dest: Path, md5: str, *, show_progress: bool | None = None) -> Path:
    """`dest`, downloaded from `url` unless a file with the right md5 is already there."""
    dest = Path(dest)
    if dest.is_file():
        if calculate_md5(dest) == md5:
            return dest
        raise UserError(f"{dest}: md5 {calculate_md5(dest)} differs from the published {md5}; delete it to download again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(2):
        resumed = part.exists() and part.stat().st_size > 0
        try:
            _stream(url, part, show_progress)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            kept = f"; the partial file {part} is resumed on the next run" if part.exists() else ""
            raise UserError(f"could not download {url} ({reason}){kept}; or {_instructions(url, dest, md5)}") from None
        got = calculate_md5(part)
        if got == md5:
            part.replace(dest)
            return dest
        part.unlink()
        if not resumed:
            break
    raise UserError(f"{url}: downloaded file has md5 {got}, expected {md5}; or {_instructions(url, dest, md5)}")
