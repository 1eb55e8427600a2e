"""Evaluation datasets from local files: Aris's own layout, or a benchmark's standard layout read by
its adapter (:mod:`aris.eval.adapters`).

Files: JSONL, CSV, a JSON list, Parquet, or a Hugging Face ``datasets`` folder saved with
``save_to_disk`` (a ``DatasetDict``: the chosen split, else the adapter's, else ``test``, else the
first). One row per item.

Aris's layout. Columns (all tasks): ``id`` (optional; defaults to the row number; unique), ``input``
(a path, or several separated by ``|``, relative to the dataset file), ``question``, ``answer``,
``subgroup`` (optional, for per-subgroup tables), ``kind`` (optional input kind: cxr, image, ct, ...)
and task-specific ones (JSON values may be written as JSON text in CSV cells):

| task | answer column | extra columns |
|---|---|---|
| text-qa | the option letter, or the option's text (or a short answer when there are no options) | ``options``: JSON list, JSON object {"A": "...", ...}, or ``a|b|c``; ``note`` (EHRNoteQA) |
| vqa | the short answer (``--mode yes-no``: yes/no) | ``answer_type`` (OPEN/CLOSED, as SLAKE), ``condition`` (yes-no: the finding macro F1 averages over; default the question) |
| ct, mri | ``yes`` / ``no`` | ``label`` (the finding; default the question), ``history``, ``condition`` |
| classify | one of ``choices`` (its text, letter, or a built-in set's class code) | ``choices``: JSON list, ``a|b|c``, or a built-in set name (``nct-crc-he``) |
| cxr-compare | ``improved`` / ``stable`` / ``worsened`` (or A/B/C, or a synonym) | ``finding``; ``input`` = ``prior.dcm|current.dcm`` |
| cxr-localize | JSON ``[y0, x0, y1, x1]`` in ORIGINAL pixels | ``label`` (the anatomy/finding) |
| wsi | reference description | ``organ``, ``procedure``, ``type_procedure`` |
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


def _undecoded(ds: Any) -> Any:
    """The dataset with image columns left as ``{"bytes", "path"}`` (written out as files later)."""
    from datasets import Image

    for name, feature in ds.features.items():
        if isinstance(feature, Image) and feature.decode:
            ds = ds.cast_column(name, Image(decode=False))
    return ds


def _saved(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in ("dataset_dict.json", "state.json"))


def _split_files(path: Path, split: str) -> list[Path]:
    """A downloaded dataset folder's files for one split: ``test.json``, ``data/test-00000-of-00001.parquet``."""
    found = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in (".parquet", ".json", ".jsonl")
        and (p.stem == split or p.name.startswith(f"{split}-"))
    )
    parquet = [p for p in found if p.suffix.lower() == ".parquet"]
    return parquet or found[:1]


def _hf_rows(path: Path, split: str | None, prefer: str | None) -> list[dict[str, Any]]:
    from datasets import Dataset, concatenate_datasets, load_from_disk

    if path.is_dir() and not _saved(path):
        chosen = split or next((s for s in (prefer, "test") if s and _split_files(path, s)), None)
        files = _split_files(path, chosen) if chosen else []
        if not files:
            raise InputError(
                path,
                f"no saved dataset here, and no {chosen or prefer or 'test'} split file (.parquet/.json)",
            )
        if files[0].suffix.lower() != ".parquet":
            return read_rows(files[0])
        ds: Any = concatenate_datasets([Dataset.from_parquet(str(f)) for f in files])
        return [dict(r) for r in _undecoded(ds)]
    try:
        ds = load_from_disk(str(path)) if path.is_dir() else Dataset.from_parquet(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise InputError(path, f"not a saved Hugging Face dataset: {e}") from None
    if hasattr(ds, "keys"):  # a DatasetDict
        names = list(ds.keys())
        if split is not None and split not in names:
            raise InputError(path, f"no split {split!r}; it has {', '.join(names)}")
        chosen = split or next((s for s in (prefer, "test") if s in names), names[0])
        ds = ds[chosen]
    return [dict(r) for r in _undecoded(ds)]


def read_rows(path: Path, split: str | None = None, prefer: str | None = None) -> list[dict[str, Any]]:
    """The raw rows of a dataset file or folder, in order."""
    if path.is_dir() or path.suffix.lower() == ".parquet":
        return _hf_rows(path, split, prefer)
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
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(path, f"not JSON: {e.msg}") from None
        if isinstance(data, list):
            return data
    raise InputError(
        path,
        "an eval dataset is a .jsonl, .csv, .json list, .parquet, or a saved Hugging Face dataset folder",
    )


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def items_from_rows(rows: list[dict[str, Any]], path: Path, base: Path) -> list[EvalItem]:
    """Rows in Aris's layout as items, input paths resolved against ``base``."""
    items = []
    for i, row in enumerate(rows, 1):
        if "answer" not in row:
            raise InputError(path, f"row {i} has no 'answer' column")
        raw_input = row.get("input")
        if isinstance(raw_input, list | tuple):
            inputs = [Path(p) if Path(p).is_absolute() else base / p for p in raw_input]
        else:
            inputs = _resolve(base, str(raw_input)) if raw_input else []
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
                str(row.get("id") if row.get("id") not in (None, "") else i),
                inputs,
                row.get("question") or None,
                answer,
                row.get("subgroup") or None,
                extra,
            )
        )
    return items


def load_dataset(path: Path, split: str | None = None) -> list[EvalItem]:
    """Rows in Aris's layout as items, input paths resolved against the dataset's folder; a bad row
    names its line."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such dataset")
    base = path if path.is_dir() else path.parent
    return items_from_rows(read_rows(path, split), path, base)


def dataset_digest(path: Path) -> str:
    """sha256 of the dataset file (or the folder's files), to tie a report to its data."""
    h = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
