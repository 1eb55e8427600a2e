#!/usr/bin/env python3
"""Check a sample folder against its manifest: every file documented, sizes and SHA-256 as listed.

A manifest is a Markdown file in the folder it describes (``tests/data/MANIFEST.md``,
``src/aris/demo/README.md``) with

- a table whose first column names each file or folder (``dicom/ct_series/head_ct2_4slices/``) in
  backticks, with its source and licence: every file on disk must fall under one of its rows;
- a ``## Checksums`` section holding one fenced block of ``<sha256>  <bytes>  <path>`` lines, one per
  file, paths relative to the folder.

Usage:
    python scripts/data/manifest.py check [MANIFEST ...]    exit 1 and list the problems, if any
    python scripts/data/manifest.py update [MANIFEST ...]   rewrite the checksum block from the files

With no MANIFEST, both of the repository's manifests are used.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = (REPO / "tests" / "data" / "MANIFEST.md", REPO / "src" / "aris" / "demo" / "README.md")
IGNORED_SUFFIXES = (".py", ".pyc")
IGNORED_PARTS = ("__pycache__", ".pytest_cache")
_ROW = re.compile(r"^\|\s*`([^`]+)`")
_SUM = re.compile(r"^([0-9a-f]{64})  (\d+)  (.+)$")
_BLOCK = re.compile(r"(## Checksums\n(?:.*\n)*?```[a-z]*\n)((?:.*\n)*?)(```)", re.MULTILINE)


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int
    path: str


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_in(root: Path, manifest: Path) -> list[str]:
    """Every data file under ``root``: not the manifest, not Python files or caches."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or p == manifest or p.suffix in IGNORED_SUFFIXES:
            continue
        if any(part in IGNORED_PARTS for part in rel.parts):
            continue
        out.append(rel.as_posix())
    return out


def table_paths(text: str) -> list[str]:
    return [m.group(1) for line in text.splitlines() if (m := _ROW.match(line))]


def checksums(text: str) -> list[Entry]:
    block = _BLOCK.search(text)
    if block is None:
        raise ValueError("no '## Checksums' section with a fenced block")
    entries = []
    for line in block.group(2).splitlines():
        if not line.strip():
            continue
        m = _SUM.match(line)
        if m is None:
            raise ValueError(f"checksum line not '<sha256>  <bytes>  <path>': {line!r}")
        entries.append(Entry(m.group(1), int(m.group(2)), m.group(3)))
    return entries


def check(manifest: Path) -> list[str]:
    """Problems found, one line each, naming the file; empty when the folder matches."""
    root = manifest.parent
    text = manifest.read_text(encoding="utf-8")
    try:
        listed = {e.path: e for e in checksums(text)}
    except ValueError as e:
        return [f"{manifest}: {e}"]
    rows = table_paths(text)
    problems = []
    on_disk = files_in(root, manifest)
    for rel in on_disk:
        if not any(rel == r or (r.endswith("/") and rel.startswith(r)) for r in rows):
            problems.append(f"{rel}: no row in the table says where it came from")
        entry = listed.get(rel)
        if entry is None:
            problems.append(f"{rel}: not in the checksum list")
            continue
        size = (root / rel).stat().st_size
        if size != entry.size:
            problems.append(f"{rel}: {size} bytes, the manifest says {entry.size}")
        elif sha256(root / rel) != entry.sha256:
            problems.append(f"{rel}: SHA-256 differs from the manifest")
    for rel in sorted(set(listed) - set(on_disk)):
        problems.append(f"{rel}: listed but missing")
    for r in rows:
        if not any(f == r or (r.endswith("/") and f.startswith(r)) for f in on_disk):
            problems.append(f"{r}: a table row for a file that is not there")
    return problems


def update(manifest: Path) -> None:
    root = manifest.parent
    text = manifest.read_text(encoding="utf-8")
    lines = "".join(
        f"{sha256(root / rel)}  {(root / rel).stat().st_size}  {rel}\n" for rel in files_in(root, manifest)
    )
    new, n = _BLOCK.subn(lambda m: m.group(1) + lines + m.group(3), text, count=1)
    if n != 1:
        raise SystemExit(f"{manifest}: no '## Checksums' section with a fenced block")
    manifest.write_text(new, encoding="utf-8")


def total_bytes(manifest: Path) -> int:
    return sum(e.size for e in checksums(manifest.read_text(encoding="utf-8")))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "update"):
        print(__doc__)
        return 2
    targets = [Path(a) for a in argv[1:]] or list(MANIFESTS)
    failed = False
    for manifest in targets:
        if argv[0] == "update":
            update(manifest)
        problems = check(manifest)
        for p in problems:
            print(f"{manifest.parent}/{p}")
        failed |= bool(problems)
        status = "FAILED" if problems else "ok"
        print(
            f"{manifest}: {len(checksums(manifest.read_text(encoding='utf-8')))} files, "
            f"{total_bytes(manifest) / 1e6:.1f} MB, {status}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
