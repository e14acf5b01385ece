"""Safe archive extraction: good archives extract; traversal, absolute paths, links and bombs are refused."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from pipeline.data.archive import extract


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _zip(path: Path, members: list[tuple[str, bytes, int | None]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def test_good_tar_and_zip_extract_with_filter(tmp_path):
    tar = _tar(tmp_path / "a.tar.gz", [_file("top/a.txt", b"alpha"), _file("top/sub/b.txt", b"beta"), _file("skip/c.txt")])
    out = extract(tar, tmp_path / "t", max_bytes=100, keep=lambda rel: rel.parts[0] == "top")
    assert (out / "top/a.txt").read_bytes() == b"alpha" and (out / "top/sub/b.txt").read_bytes() == b"beta"
    assert not (out / "skip").exists()
    z = _zip(tmp_path / "a.zip", [("d/", b"", None), ("d/x.bin", b"123", 0o100644)])
    out = extract(z, tmp_path / "z", max_bytes=100)
    assert (out / "d/x.bin").read_bytes() == b"123"


@pytest.mark.parametrize(
    "members, fragment",
    [
        ([_file("ok.txt"), _file("../evil.txt")], "climbs out"),
        ([_file("a/../../evil.txt")], "climbs out"),
        ([_file("/tmp/evil_abs.txt")], "absolute path"),
        ([_link("lnk", "/etc/passwd")], "outside the target"),
        ([_link("d/lnk", "../../..")], "outside the target"),
        ([_link("hard", "../outside", kind=tarfile.LNKTYPE)], "outside the target"),
        ([_file("a.txt"), _link("inner", "a.txt")], "links are refused"),
        ([_file("dir\\..\\evil.txt")], "backslash"),
    ],
)
def test_malicious_tar_is_refused_and_leaves_nothing(tmp_path, members, fragment):
    tar = _tar(tmp_path / "bad.tar.gz", members)
    target = tmp_path / "root" / "target"
    with pytest.raises(UserError, match=fragment) as err:
        extract(tar, target, max_bytes=1000)
    assert "\n" not in str(err.value)
    assert not target.exists() and not (tmp_path / "root" / ".target.extracting").exists()
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil_abs.txt").exists()


@pytest.mark.parametrize(
    "members, fragment",
    [
        ([("../evil.txt", b"x", None)], "climbs out"),
        ([("/abs/evil.txt", b"x", None)], "absolute path"),
        ([("C:/evil.txt", b"x", None)], "absolute path"),
        ([("lnk", b"/etc/passwd", stat.S_IFLNK | 0o777)], "outside the target"),
        ([("fifo", b"", stat.S_IFIFO | 0o644)], "special file"),
    ],
)
def test_malicious_zip_is_refused(tmp_path, members, fragment):
    z = _zip(tmp_path / "bad.zip", members)
    with pytest.raises(UserError, match=fragment):
        extract(z, tmp_path / "target", max_bytes=1000)
    assert not (tmp_path / "target").exists() and not (tmp_path / "evil.txt").exists()


def test_size_limits_count_written_bytes_not_headers(tmp_path):
    # a zip bomb in miniature: 1 MB of zeros compresses to ~1 KB
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * 2**20)
    assert z.stat().st_size < 10_000
    with pytest.raises(UserError, match="size limit"):
        extract(z, tmp_path / "t", max_bytes=100_000)
    tar = _tar(tmp_path / "many.tar.gz", [_file(f"f{i}") for i in range(5)])
    with pytest.raises(UserError, match="more than 3 members"):
        extract(tar, tmp_path / "t", max_bytes=100, max_members=3)


def test_existing_target_is_replaced_only_on_success(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(UserError):
        extract(_tar(tmp_path / "bad.tar.gz", [_file("../x")]), target, max_bytes=100)
    assert (target / "old.txt").read_text() == "old"
    extract(_tar(tmp_path / "good.tar.gz", [_file("new.txt")]), target, max_bytes=100)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_not_an_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not an archive")
    with pytest.raises(UserError, match="not a zip or tar"):
        extract(tmp_path / "x.zip", tmp_path / "t", max_bytes=10)
