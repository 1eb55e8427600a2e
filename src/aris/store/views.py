"""What the store hands out: frozen copies of its rows, safe to keep after the session closes.

One constructor, :func:`view`, makes every view from its row by field name, so a column added to a table
and to its view needs no other code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aris.store.db import aware

V = TypeVar("V")


def view(cls: type[V], row: Any, **extra: Any) -> V:
    """A ``cls`` view of ``row``: each field from the row's attribute of the same name (or ``extra``).

    Times come back timezone-aware (SQLite stores them naive) and JSON columns as fresh dicts.
    """
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in extra:
            values[f.name] = extra[f.name]
            continue
        value = getattr(row, f.name)
        if isinstance(value, datetime):
            value = aware(value)
        elif isinstance(value, dict):
            value = dict(value)
        elif value is None and f.type in ("dict[str, Any]",):
            value = {}
        values[f.name] = value
    return cls(**values)


@dataclass(frozen=True)
class NewItem:
    """An item to add to a job (see :func:`aris.batch.manifest.item_key` for ``key``)."""

    seq: int
    key: str
    input_ref: str
    input_digest: str
    question: str | None = None
    kind: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemView:
    id: int
    job_id: str
    seq: int
    key: str
    input_ref: str
    input_digest: str
    question: str | None
    kind: str
    options: dict[str, Any]
    task_options: dict[str, Any]
    status: str
    attempts: int
    error: str | None
    worker: str | None
    prepare_s: float | None
    generate_s: float | None


@dataclass(frozen=True)
class JobView:
    id: str
    kind: str
    task: str
    model: str
    engine: str
    params: dict[str, Any]
    fingerprint: str
    source: str | None
    created: datetime
    finished: datetime | None
    status: str
    runner_pid: int | None


@dataclass(frozen=True)
class AuditView:
    at: datetime
    actor: str
    action: str
    task: str | None
    model: str | None
    engine: str | None
    input_digest: str | None
    job_id: str | None
    item_key: str | None
    detail: str | None
