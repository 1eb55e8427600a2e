"""Jobs: created with their items in one transaction, found by id (or a unique prefix) or fingerprint."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aris.store.audit import AuditLog
from aris.store.db import JobNotFoundError
from aris.store.models import Item, ItemStatus, Job, JobStatus, utcnow
from aris.store.views import JobView, NewItem, view

logger = logging.getLogger(__name__)


class Jobs(AuditLog):
    def create_job(
        self,
        task: str,
        model: str,
        engine: str,
        params: dict[str, Any],
        items: Iterable[NewItem] = (),
        *,
        kind: str = "batch",
        source: str | None = None,
        fingerprint: str = "",
    ) -> JobView:
        """A new job and its items, in one transaction (a half-created job is never seen)."""
        job_id = uuid.uuid4().hex[:12]
        with self._tx() as s:
            job = Job(
                id=job_id,
                kind=kind,
                task=task,
                model=model,
                engine=engine,
                params=params,
                fingerprint=fingerprint or job_id,
                source=source,
                status=JobStatus.PENDING,
                created=utcnow(),
            )
            s.add(job)
            s.flush()
            n = self._add_items(s, job_id, items)
            s.add(self._audit_row("job.create", job=job, detail=f"{n} items"))
        logger.info("job %s created: %d items", job_id, n)
        return self.get_job(job_id)

    def add_items(self, job_id: str, items: Iterable[NewItem]) -> int:
        with self._tx() as s:
            return self._add_items(s, job_id, items)

    @staticmethod
    def _add_items(s: Session, job_id: str, items: Iterable[NewItem]) -> int:
        n = 0
        for it in items:
            s.add(
                Item(
                    job_id=job_id,
                    seq=it.seq,
                    key=it.key,
                    input_ref=it.input_ref,
                    input_digest=it.input_digest,
                    question=it.question,
                    kind=it.kind,
                    options=it.options,
                    task_options=it.task_options,
                    status=ItemStatus.PENDING,
                    attempts=0,
                    created=utcnow(),
                )
            )
            n += 1
        return n

    def get_job(self, job_id: str) -> JobView:
        """A job by id, or by a unique prefix of it (as shown by ``aris batch status``)."""
        with self._read() as s:
            row = s.get(Job, job_id)
            if row is None and job_id:
                rows = s.scalars(select(Job).where(Job.id.startswith(job_id, autoescape=True)).limit(2)).all()
                if len(rows) == 1:
                    row = rows[0]
            if row is None:
                raise JobNotFoundError(f"no job {job_id!r} in the store {self.url}")
            return view(JobView, row)

    def find_job(self, fingerprint: str) -> JobView | None:
        """The latest job made from the same task, model, params and items (to resume it)."""
        with self._read() as s:
            row = s.scalars(
                select(Job).where(Job.fingerprint == fingerprint).order_by(Job.created.desc()).limit(1)
            ).first()
            return view(JobView, row) if row else None

    def jobs(self, limit: int = 20) -> list[JobView]:
        with self._read() as s:
            rows = s.scalars(select(Job).order_by(Job.created.desc()).limit(limit)).all()
            return [view(JobView, r) for r in rows]

    def set_job_status(self, job_id: str, status: str) -> None:
        with self._tx() as s:
            s.execute(update(Job).where(Job.id == job_id).values(status=status))
