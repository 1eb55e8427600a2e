"""Batch results to a file: JSONL (one full record per item) or CSV (one flat row per item)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from aris.errors import ConfigError

CSV_COLUMNS = (
    "key", "input", "question", "status", "error", "attempts", "worker", "prepare_s", "generate_s",
    "text", "parsed", "errors", "warnings", "model", "engine", "prompt_sha256", "notice",
)  # fmt: skip


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    res = row.get("result") or {}
    flat = {
        k: row.get(k)
        for k in (
            "key",
            "input",
            "question",
            "status",
            "error",
            "attempts",
            "worker",
            "prepare_s",
            "generate_s",
        )
    }
    flat.update(
        text=res.get("text"),
        parsed=json.dumps(res["parsed"], ensure_ascii=False) if res.get("parsed") is not None else None,
        errors="; ".join(res.get("errors") or []) or None,
        warnings="; ".join(res.get("warnings") or []) or None,
        model=res.get("model"),
        engine=res.get("engine"),
        prompt_sha256=res.get("prompt_sha256"),
        notice=res.get("notice"),
    )
    return flat


def write_export(rows: list[dict[str, Any]], out: Path) -> int:
    """Write rows (from :meth:`aris.store.Store.export`) as JSONL or CSV by the file's extension."""
    suffix = out.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv"):
        raise ConfigError(f"{out}: export to a .jsonl or a .csv file")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        if suffix == ".csv":
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow(csv_row(r))
        else:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(out)  # a reader never sees half a file
    return len(rows)
