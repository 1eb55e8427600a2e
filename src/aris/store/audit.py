"""The audit trail: who did what, to which job, item and input digest. Never a path, a name or a key."""

from __future__ import annotations

from sqlalchemy import select

from aris.store.db import Database
from aris.store.models import AuditRow, Job, utcnow
from aris.store.views import AuditView, view


class AuditLog(Database):
    def _audit_row(
        self,
        action: str,
        *,
        job: Job | None = None,
        actor: str | None = None,
        task: str | None = None,
        model: str | None = None,
        engine: str | None = None,
        input_digest: str | None = None,
        item_key: str | None = None,
        detail: str | None = None,
    ) -> AuditRow:
        return AuditRow(
            at=utcnow(),
            actor=actor or self.actor,
            action=action,
            task=task or (job.task if job else None),
            model=model or (job.model if job else None),
            engine=engine or (job.engine if job else None),
            input_digest=input_digest,
            job_id=job.id if job else None,
            item_key=item_key,
            detail=detail,
        )

    def audit(
        self,
        action: str,
        *,
        actor: str | None = None,
        task: str | None = None,
        model: str | None = None,
        engine: str | None = None,
        input_digest: str | None = None,
        job_id: str | None = None,
        item_key: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record who did what. ``actor``: the OS user (default) or ``key:<id>`` — never a key itself."""
        with self._tx() as s:
            row = self._audit_row(
                action,
                actor=actor,
                task=task,
                model=model,
                engine=engine,
                input_digest=input_digest,
                item_key=item_key,
                detail=detail,
            )
            row.job_id = job_id
            s.add(row)

    def audit_trail(self, job_id: str | None = None, action: str | None = None) -> list[AuditView]:
        with self._read() as s:
            q = select(AuditRow)
            if job_id is not None:
                q = q.where(AuditRow.job_id == job_id)
            if action is not None:
                q = q.where(AuditRow.action == action)
            rows = s.scalars(q.order_by(AuditRow.id)).all()
            return [view(AuditView, r) for r in rows]
