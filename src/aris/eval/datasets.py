"""Evaluation datasets from local files: JSONL, CSV, or a Hugging Face ``datasets`` folder saved to disk.

One row per item. Columns (all tasks): ``id`` (optional; defaults to the row number; unique), ``input``
(a path, or several separated by ``|``, relative to the dataset file), ``question``, ``answer``,
``subgroup`` (optional, for per-subgroup tables), ``kind`` (optional input kind: cxr, image, ct, ...)
and task-specific ones (JSON values may be written as JSON text in CSV cells):

| task | answer column | extra columns |
|---|---|---|
| text-qa | the option letter, or the option's text (or a short answer when there are no options) | ``options``: JSON list, JSON object {"A": "...", ...}, or ``a|b|c`` |
| vqa | the short answer; a set whose answers are ALL yes/no is binary classification | ``condition`` (binary: the finding macro F1 averages over; default the question) |
| ct, mri | ``yes`` / ``no`` | ``question`` names the finding; ``condition`` as for vqa |
| classify | one of ``choices`` (its text, letter, or a built-in set's class code) | ``choices``: JSON list, ``a|b|c``, or a built-in set name (``nct-crc-he``) |
| cxr-compare | ``improved`` / ``stable`` / ``worsened`` (or A/B/C, or a synonym) | ``finding``; ``input`` = ``prior.dcm|current.dcm`` |
| cxr-localize | JSON ``[y0, x0, y1, x1]`` in ORIGINAL pixels | ``label`` (the anatomy/finding) |
| wsi | reference description | ``organ``, ``procedure`` |
| lab-extract | path to a truth JSON (list of tests), or the JSON inline | |
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aris.errors import InputError


@dataclass
class EvalItem:
    id: str
    inputs: list[Path]
    question: str | None
    answer: Any
    subgroup: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _resolve(base: Path, value: str) -> list[Path]:
    return [
        (base / p.strip()) if not Path(p.strip()).is_absolute() else Path(p.strip())
        for p in value.split("|")
        if p.strip()
    ]


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        try:
            from datasets import load_from_disk
        except ImportError as e:  # pragma: no cover - datasets is a dependency
            raise InputError(path, "reading a saved Hugging Face dataset needs the `datasets` package") from e
        ds = load_from_disk(str(path))
        if hasattr(ds, "keys"):  # a DatasetDict: take the test split, else the first
            ds = ds["test"] if "test" in ds else ds[next(iter(ds.keys()))]
        return [dict(r) for r in ds]
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        out = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(path, f"line {i} is not JSON: {e.msg}") from e
        return out
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if isinstance(data, list):
            return data
    raise InputError(
        path, "an eval dataset is a .jsonl, .csv, .json list, or a saved Hugging Face dataset folder"
    )


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load_dataset(path: Path) -> list[EvalItem]:
    """Rows as items, input paths resolved against the dataset's folder; a bad row names its line."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such dataset")
    base = path if path.is_dir() else path.parent
    items = []
    for i, row in enumerate(_rows(path), 1):
        if "answer" not in row:
            raise InputError(path, f"row {i} has no 'answer' column")
        inputs = _resolve(base, str(row["input"])) if row.get("input") else []
        extra = {
            k: _maybe_json(v)
            for k, v in row.items()
            if k not in ("id", "input", "question", "answer", "subgroup")
        }
        answer = _maybe_json(row["answer"])
        if isinstance(answer, str) and answer.endswith(".json") and (base / answer).exists():
            answer = json.loads((base / answer).read_text())
        items.append(
            EvalItem(
                str(row.get("id") or i),
                inputs,
                row.get("question") or None,
                answer,
                row.get("subgroup") or None,
                extra,
            )
        )
    return items


def dataset_digest(path: Path) -> str:
    """sha256 of the dataset file (or the folder's files), to tie a report to its data."""
    h = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
