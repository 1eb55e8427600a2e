"""Zip extraction that cannot escape its folder or fill the disk."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from aris.inputs.archive import safe_extract
from aris.inputs.errors import CorruptFileError, UnsafeArchiveError


def _zip(path: Path, entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_extracts_files_in_folders(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "ok.zip", {"a/b/one.dcm": b"1" * 10, "two.dcm": b"22", "a/": b""})
    dest = tmp_path / "out"
    files = safe_extract(archive, dest)
    assert files == [(dest / "a/b/one.dcm").resolve(), (dest / "two.dcm").resolve()]
    assert (dest / "a/b/one.dcm").read_bytes() == b"1" * 10
    assert (dest / "two.dcm").read_bytes() == b"22"


@pytest.mark.parametrize(
    "name",
    ["../escape.dcm", "a/../../escape.dcm", "/etc/passwd", "C:\\Windows\\evil.dcm", "a\\..\\..\\evil.dcm"],
)
def test_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "evil.zip", {"fine.dcm": b"x", name: b"payload"})
    dest = tmp_path / "sub" / "out"
    with pytest.raises(UnsafeArchiveError, match="escape the extraction folder") as e:
        safe_extract(archive, dest)
    assert str(archive) in str(e.value)
    assert not dest.exists()  # checked before anything is written
    assert not (tmp_path / "escape.dcm").exists()
    assert not (tmp_path / "sub" / "escape.dcm").exists()


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("link.dcm")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(tmp_path / "link.zip", tmp_path / "out")


def test_limits(tmp_path: Path) -> None:
    many = _zip(tmp_path / "many.zip", {f"{i}.dcm": b"x" for i in range(6)})
    with pytest.raises(UnsafeArchiveError, match="6 entries, over the limit of 5"):
        safe_extract(many, tmp_path / "o1", max_members=5)
    big = _zip(tmp_path / "big.zip", {"a": b"x" * 600, "b": b"y" * 600})
    with pytest.raises(UnsafeArchiveError, match="more than 1000 bytes"):
        safe_extract(big, tmp_path / "o2", max_total_bytes=1000)
    assert not (tmp_path / "o2").exists()


def test_zip_bomb_ratio(tmp_path: Path) -> None:
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.dcm": b"\0" * (4 * 1024 * 1024)})
    info = zipfile.ZipFile(bomb).getinfo("zeros.dcm")
    assert 1000 < info.file_size / info.compress_size < 2000  # deflate packs zeros ~1030x
    with pytest.raises(UnsafeArchiveError, match=r"compressed 10\d\dx \(zip bomb\?\)"):
        safe_extract(bomb, tmp_path / "out")  # the default limit is 1000x
    assert not (tmp_path / "out").exists()
    # A looser limit lets the same archive through, written in full.
    assert safe_extract(bomb, tmp_path / "ok", max_ratio=2000)[0].stat().st_size == 4 * 1024 * 1024


def test_duplicate_names_and_not_a_zip(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "dup.zip", "w") as zf:
        zf.writestr("a.dcm", b"1")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("a.dcm", b"2")
    with pytest.raises(UnsafeArchiveError, match="same path"):
        safe_extract(tmp_path / "dup.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "fake.zip").write_bytes(b"PK\x03\x04 but then nothing")
    with pytest.raises(CorruptFileError, match="not a readable zip"):
        safe_extract(tmp_path / "fake.zip", tmp_path / "out2")
