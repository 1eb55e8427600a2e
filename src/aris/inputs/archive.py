"""Unpack a zip of images without letting it write outside its folder or fill the disk.

Used for studies dropped as a zip and by the server for uploads: every entry is checked before
anything is written (absolute paths, ``..``, symlinks, counts, declared sizes, compression ratio),
and bytes are counted again while writing, because a zip's declared sizes can lie.
"""

from __future__ import annotations

import logging
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from aris.inputs.errors import CorruptFileError, UnsafeArchiveError

logger = logging.getLogger(__name__)

MAX_MEMBERS = 20_000  # a large multi-series CT study is a few thousand files
MAX_TOTAL_BYTES = 8 * 1024**3
MAX_RATIO = 1_000  # DICOM compresses 2-20x; a zip bomb compresses thousands of times
RATIO_FLOOR_BYTES = 1024**2  # small members may compress absurdly well (blank files) harmlessly
_CHUNK = 1024**2


def _member_path(name: str) -> PurePosixPath | None:
    """The relative path an entry may be written to, or None when it is unsafe."""
    name = name.replace("\\", "/")  # zips made on Windows
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\x00" in name:
        return None
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)


def safe_extract(
    zip_path: str | Path,
    dest: str | Path,
    *,
    max_members: int = MAX_MEMBERS,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
) -> list[Path]:
    """Extract ``zip_path`` into ``dest`` and return the files written, in archive order.

    Raises
    ------
    UnsafeArchiveError
        An entry with an absolute path, a ``..`` component or a symlink; more than ``max_members``
        entries; more than ``max_total_bytes`` uncompressed (declared or actually written); or an
        entry compressed more than ``max_ratio`` times (a zip bomb). Nothing is left behind then.
    CorruptFileError
        Not a zip, or a damaged one.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CorruptFileError(zip_path, f"not a readable zip archive ({type(e).__name__})") from e
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise UnsafeArchiveError(zip_path, f"{len(infos)} entries, over the limit of {max_members}")
        plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        declared = 0
        for info in infos:
            rel = _member_path(info.filename)
            if rel is None:
                raise UnsafeArchiveError(
                    zip_path, "an entry has an absolute path or '..' and would escape the extraction folder"
                )
            if _is_symlink(info):
                raise UnsafeArchiveError(zip_path, "an entry is a symbolic link; links are not extracted")
            if info.flag_bits & 0x1:
                raise UnsafeArchiveError(zip_path, "an entry is encrypted")
            if info.is_dir():
                continue
            declared += info.file_size
            if declared > max_total_bytes:
                raise UnsafeArchiveError(
                    zip_path, f"unpacks to more than {max_total_bytes} bytes (declared sizes)"
                )
            if info.file_size > RATIO_FLOOR_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
                raise UnsafeArchiveError(
                    zip_path,
                    f"an entry is compressed {info.file_size // max(info.compress_size, 1)}x (zip bomb?)",
                )
            plan.append((info, rel))

        created = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written: list[Path] = []
        total = 0
        try:
            for info, rel in plan:
                target = (root / rel).resolve()
                if not target.is_relative_to(root) or target == root:
                    raise UnsafeArchiveError(zip_path, "an entry would escape the extraction folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("xb") as out:
                    member = 0
                    while chunk := src.read(_CHUNK):
                        member += len(chunk)
                        total += len(chunk)
                        if member > info.file_size or total > max_total_bytes:
                            raise UnsafeArchiveError(
                                zip_path, "an entry unpacks to more bytes than it declares (zip bomb?)"
                            )
                        out.write(chunk)
                written.append(target)
        except UnsafeArchiveError:
            _remove(written, root, created)
            raise
        except FileExistsError as e:
            _remove(written, root, created)
            raise UnsafeArchiveError(zip_path, "two entries have the same path") from e
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
            _remove(written, root, created)
            raise CorruptFileError(
                zip_path, f"damaged zip archive ({type(e).__name__} while extracting)"
            ) from e
    logger.info("zip: %d files, %d bytes extracted", len(written), total)
    return written


def _remove(files: list[Path], root: Path, created: bool) -> None:
    for f in files:
        f.unlink(missing_ok=True)
    # Remove now-empty folders the extraction created (never the destination itself).
    for d in sorted({p.parent for p in files}, key=lambda p: len(p.parts), reverse=True):
        while d != root and d.is_relative_to(root):
            try:
                d.rmdir()
            except OSError:
                break
            d = d.parent
    if created and root.exists() and not any(root.iterdir()):
        shutil.rmtree(root, ignore_errors=True)
