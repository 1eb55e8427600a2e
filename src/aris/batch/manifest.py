"""Worklists: what a batch runs, and the content keys that make a rerun skip finished work.

A worklist is a folder (one item per study/series sub-folder or per file), or a CSV/JSONL file with one
row per item: ``path`` (several inputs separated by ``|``; empty for a text-only question), and
optionally ``question``, ``kind``, ``options`` (reader options, a JSON object) and ``task_options``.
Relative paths are relative to the worklist file.

A worklist can also be a search URL of a remote source (``dicomweb://pacs?ModalitiesInStudy=CT``), and an
item's input a URL (``dicomweb://pacs/studies/<uid>``): see :mod:`aris.pacs.source`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aris.errors import InputError

CHUNK = 1 << 20
LIST_SUFFIXES = {".csv", ".jsonl", ".ndjson"}


@dataclass(frozen=True)
class WorkItem:
    """One unit of a batch: its input paths (none for a text-only question) and how to read them."""

    paths: tuple[Path | str, ...]  # a str is a remote source's URL (dicomweb://...)
    question: str | None = None
    kind: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)

    @property
    def input_ref(self) -> str:
        return "|".join(str(p) for p in self.paths)

    @classmethod
    def from_ref(
        cls,
        ref: str,
        question: str | None = None,
        kind: str = "auto",
        options: dict[str, Any] | None = None,
        task_options: dict[str, Any] | None = None,
    ) -> WorkItem:
        return cls(
            paths=tuple(source_url(p) or Path(p) for p in ref.split("|") if p),
            question=question,
            kind=kind or "auto",
            options=dict(options or {}),
            task_options=dict(task_options or {}),
        )


# -- digests and keys ------------------------------------------------------------------------------


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (slides and volumes can be gigabytes)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def path_digest(path: Path) -> str:
    """Content digest of a file, or of a folder: every file's relative name and bytes, in sorted order.

    Names count as well as bytes, so renaming or moving slices inside a study changes the digest. A path
    that cannot be read gets a digest of its name, so the item is still created and then fails with the
    reader's error, instead of stopping the whole batch.
    """
    try:
        if path.is_file():
            return file_digest(path)
        if path.is_dir():
            h = hashlib.sha256(b"aris-folder-v1\0")
            files = sorted(
                (p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix()
            )
            for p in files:
                rel = p.relative_to(path).as_posix().encode()
                h.update(rel + b"\0" + file_digest(p).encode() + b"\0")
            return h.hexdigest()
    except OSError:
        pass
    return hashlib.sha256(b"aris-unreadable-v1\0" + str(path).encode()).hexdigest()


def input_digest(paths: Iterable[Path | str]) -> str:
    """One digest for an item's inputs, in order (a prior and a current film are not interchangeable)."""
    digests = [_ref_digest(p) for p in paths]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256(("inputs-v1:" + ",".join(digests)).encode()).hexdigest()


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def item_key(
    digest: str, task: str, identity: dict[str, Any], params: dict[str, Any], question: str | None
) -> str:
    """sha256 over what determines an answer: input bytes, task, the engine's identity (model, weights,
    adapter, quantization, dtype, projector, context), decoding settings, options, recipe and question."""
    return hashlib.sha256(
        _canon(["item-v2", digest, task, identity, params, question or ""]).encode()
    ).hexdigest()


def job_fingerprint(
    task: str, identity: dict[str, Any], params: dict[str, Any], items: Iterable[tuple[str, str]]
) -> str:
    """The same task, model, params and (key, input) pairs make the same job: a rerun resumes it."""
    return hashlib.sha256(_canon(["job-v2", task, identity, params, sorted(items)]).encode()).hexdigest()


# -- reading worklists -----------------------------------------------------------------------------


def load_worklist(source: Path | str, *, question: str | None = None, kind: str = "auto") -> list[WorkItem]:
    """Items of a folder or a CSV/JSONL worklist. ``question``/``kind`` apply to rows that set none."""
    url = source_url(source)
    if url is not None:
        return _source_worklist(url, question, kind)
    source = Path(source).expanduser().absolute()  # stored refs must not depend on the working folder
    if not source.exists():
        raise InputError(source, "no such worklist (a folder, a .csv or .jsonl file, or a batch id)")
    if source.is_dir():
        items = [
            WorkItem(paths=(p,), question=question, kind=kind)
            for p in sorted(source.iterdir(), key=lambda p: p.name)
            if not p.name.startswith(".")
        ]
    elif source.suffix.lower() in LIST_SUFFIXES:
        rows = _read_rows(source)
        items = [_row_item(source, i, row, question, kind) for i, row in enumerate(rows, start=1)]
    else:
        raise InputError(source, "a worklist is a folder, a .csv or a .jsonl file")
    if not items:
        raise InputError(source, "the worklist is empty")
    return items


def _read_rows(source: Path) -> list[dict[str, Any]]:
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(source, f"cannot read the worklist: {e}") from e
    if source.suffix.lower() == ".csv":
        return [dict(r) for r in csv.DictReader(text.splitlines())]
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(source, f"line {n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise InputError(source, f"line {n}: expected a JSON object")
        rows.append(row)
    return rows


def _json_field(source: Path, n: int, name: str, value: Any) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InputError(source, f"row {n}: {name} is not a JSON object ({e.msg})") from None
    if not isinstance(value, dict):
        raise InputError(source, f"row {n}: {name} must be a JSON object")
    return value


def _row_item(source: Path, n: int, row: dict[str, Any], question: str | None, kind: str) -> WorkItem:
    unknown = set(row) - {"path", "input", "question", "kind", "options", "task_options", "id"}
    if unknown:
        raise InputError(
            source,
            f"row {n}: unknown column(s) {', '.join(sorted(unknown))}; "
            "expected path, question, kind, options, task_options",
        )
    ref = str(row.get("path") or row.get("input") or "").strip()
    base = source.parent
    paths = tuple(
        source_url(p.strip())
        or (
            Path(os.path.expanduser(p.strip()))
            if Path(os.path.expanduser(p.strip())).is_absolute()
            else base / p.strip()
        )
        for p in ref.split("|")
        if p.strip()
    )
    q = row.get("question")
    q = str(q) if q not in (None, "") else question
    if not paths and not q:
        raise InputError(source, f"row {n}: neither a path nor a question")
    return WorkItem(
        paths=paths,
        question=q,
        kind=str(row.get("kind") or kind),
        options=_json_field(source, n, "options", row.get("options")),
        task_options=_json_field(source, n, "task_options", row.get("task_options")),
    )


# -- remote sources (aris.inputs.SOURCES): URL worklists and URL inputs --------------------------------

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/+(.*)$", re.DOTALL)


def source_url(ref: str | Path) -> str | None:
    """``scheme://...`` if ``ref`` is a registered source's URL (also in the one-slash form a Path leaves)."""
    m = _URL.match(str(ref))
    if m is None:
        return None
    from aris.inputs import SOURCES

    scheme = m.group(1).lower()
    return f"{scheme}://{m.group(2)}" if scheme in SOURCES else None


def _ref_digest(ref: Path | str) -> str:
    """A URL's digest comes from its source (no download); one it cannot give is a name digest, so the
    item is still created and fails with the source's error when it runs."""
    url = source_url(ref)
    if url is None:
        return path_digest(Path(ref))
    from aris.errors import ArisError
    from aris.inputs import SOURCES

    try:
        return str(SOURCES.get(url.split("://", 1)[0]).digest(url))
    except ArisError:
        return hashlib.sha256(b"aris-unreadable-v1\0" + url.encode()).hexdigest()


def _source_worklist(url: str, question: str | None, kind: str) -> list[WorkItem]:
    from aris.inputs import SOURCES

    source = SOURCES.get(url.split("://", 1)[0])
    if not hasattr(source, "worklist"):
        raise InputError(url, "this source names one input, not a worklist")
    items: list[WorkItem] = source.worklist(url, question=question, kind=kind)
    return items
