"""Results, kept once per item key: a hash of everything that can change an answer (input bytes, task,
the engine's identity, decoding settings, options, recipe, question). The same work is never recorded
twice, across jobs too, and an item whose key already has a result is done without running."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aris.errors import ArisError
from aris.result import Result
from aris.store.audit import AuditLog
from aris.store.db import JobNotFoundError
from aris.store.models import Item, ItemStatus, Job, ResultRow, utcnow


class Results(AuditLog):
    def record_result(
        self,
        item_id: int,
        result: Result | dict[str, Any],
        *,
        worker: str | None = None,
        prepare_s: float | None = None,
        generate_s: float | None = None,
    ) -> bool:
        """Store the item's result (once per key) and mark it done, in one transaction.

        Returns False when a result for the key already existed (the item is still marked done).
        """
        data = result.model_dump(mode="json") if isinstance(result, Result) else result
        with self._tx() as s:
            item = s.get(Item, item_id)
            if item is None:
                raise ArisError(f"no item {item_id} in the store")
            job = s.get(Job, item.job_id)
            new = self._insert_result(s, item.key, item_id, data)
            item.status = ItemStatus.DONE
            item.error = None
            item.worker = worker
            item.prepare_s = prepare_s
            item.generate_s = generate_s
            item.finished = utcnow()
            s.add(
                self._audit_row(
                    "item.done" if new else "item.reused",
                    job=job,
                    model=data.get("model"),
                    engine=data.get("engine"),
                    input_digest=item.input_digest,
                    item_key=item.key,
                )
            )
            return new

    def _insert_result(self, s: Session, key: str, item_id: int, data: dict[str, Any]) -> bool:
        dialect = s.get_bind().dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        stmt = (
            insert(ResultRow)
            .values(key=key, item_id=item_id, data=data, created=utcnow())
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(ResultRow.id)
        )
        # RETURNING, not rowcount: drivers disagree on rowcount for INSERT .. ON CONFLICT.
        return s.execute(stmt).scalar() is not None

    def done_from_existing(self, item_id: int) -> bool:
        """Mark the item done if a result for its key is already stored (same input, task, model...)."""
        with self._tx() as s:
            item = s.get(Item, item_id)
            if item is None or not s.scalar(select(ResultRow.id).where(ResultRow.key == item.key)):
                return False
            item.status = ItemStatus.DONE
            item.error = None
            item.finished = utcnow()
            s.add(
                self._audit_row(
                    "item.reused",
                    job=s.get(Job, item.job_id),
                    input_digest=item.input_digest,
                    item_key=item.key,
                )
            )
            return True

    def result_for(self, key: str) -> dict[str, Any] | None:
        with self._read() as s:
            data = s.scalar(select(ResultRow.data).where(ResultRow.key == key))
            return dict(data) if data is not None else None

    def export(self, job_id: str) -> list[dict[str, Any]]:
        """One row per item, in worklist order, with its result (if done) or error (if failed)."""
        with self._read() as s:
            if s.get(Job, job_id) is None:
                raise JobNotFoundError(f"no job {job_id!r} in the store {self.url}")
            rows = s.execute(
                select(Item, ResultRow.data)
                .outerjoin(ResultRow, ResultRow.key == Item.key)
                .where(Item.job_id == job_id)
                .order_by(Item.seq, Item.id)
            ).all()
            out = []
            for item, data in rows:
                out.append(
                    {
                        "key": item.key,
                        "input": item.input_ref,
                        "input_digest": item.input_digest,
                        "question": item.question,
                        "status": item.status,
                        "attempts": item.attempts,
                        "error": item.error,
                        "worker": item.worker,
                        "prepare_s": item.prepare_s,
                        "generate_s": item.generate_s,
                        "result": dict(data) if data is not None and item.status == ItemStatus.DONE else None,
                    }
                )
        return out
