"""The work queue: a runner's lease on a job, and items claimed, requeued, failed or retried.

Item life: pending -> running (claimed by a runner) -> done | failed. A runner that dies leaves its items
running; the next runner of the same job takes the dead runner's lease and sets them back to pending.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from aris.errors import ArisError
from aris.store.audit import AuditLog
from aris.store.db import JobBusyError, JobNotFoundError, aware, rowcount
from aris.store.models import Item, ItemStatus, Job, JobStatus, utcnow
from aris.store.views import ItemView, view

logger = logging.getLogger(__name__)

# A lease whose heartbeat is older than this is dead, whatever host holds it.
LEASE_TTL = timedelta(seconds=60)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class Queue(AuditLog):
    def acquire(self, job_id: str, runner_id: str) -> int:
        """Take the job for this process and reset items a dead runner left ``running`` to pending.

        Returns how many items were reset. Raises :class:`JobBusyError` when a live process holds it.
        """
        now = utcnow()
        host = socket.gethostname()
        with self._tx() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFoundError(f"no job {job_id!r} in the store {self.url}")
            if job.runner_id and job.runner_id != runner_id and self._lease_alive(job, now, host):
                raise JobBusyError(
                    f"batch {job_id} is being run by another process (pid {job.runner_pid} on "
                    f"{job.runner_host}); wait for it or stop it, then run again"
                )
            reset = rowcount(
                s.execute(
                    update(Item)
                    .where(Item.job_id == job_id, Item.status == ItemStatus.RUNNING)
                    .values(status=ItemStatus.PENDING, runner_id=None)
                )
            )
            resumed = job.status != JobStatus.PENDING
            job.runner_id = runner_id
            job.runner_host = host
            job.runner_pid = os.getpid()
            job.heartbeat = now
            job.status = JobStatus.RUNNING
            job.finished = None
            s.add(
                self._audit_row(
                    "job.resume" if resumed else "job.start", job=job, detail=f"{reset} running items reset"
                )
            )
        if reset:
            logger.info("job %s: %d items left running by a dead runner reset to pending", job_id, reset)
        return reset

    @staticmethod
    def _lease_alive(job: Job, now: datetime, host: str) -> bool:
        beat = aware(job.heartbeat)
        if beat is None or now - beat > LEASE_TTL:
            return False
        if job.runner_host == host and job.runner_pid is not None:
            return _pid_alive(job.runner_pid)
        return True

    def heartbeat(self, job_id: str, runner_id: str) -> None:
        with self._tx() as s:
            s.execute(
                update(Job).where(Job.id == job_id, Job.runner_id == runner_id).values(heartbeat=utcnow())
            )

    def release(self, job_id: str, runner_id: str) -> str:
        """Give the lease back: items this runner still holds go back to pending. Returns the job status."""
        with self._tx() as s:
            s.execute(
                update(Item)
                .where(Item.job_id == job_id, Item.status == ItemStatus.RUNNING, Item.runner_id == runner_id)
                .values(status=ItemStatus.PENDING, runner_id=None)
            )
            left = s.scalar(
                select(func.count())
                .select_from(Item)
                .where(Item.job_id == job_id, Item.status.in_([ItemStatus.PENDING, ItemStatus.RUNNING]))
            )
            status = JobStatus.STOPPED if left else JobStatus.DONE
            job = s.get(Job, job_id)
            if job is not None and job.runner_id == runner_id:
                job.runner_id = None
                job.runner_pid = None
                job.runner_host = None
                job.status = status
                job.finished = utcnow()
                s.add(self._audit_row("job.finish", job=job, detail=status))
            return status

    def claim_next(self, job_id: str, runner_id: str) -> ItemView | None:
        """The next pending item of the job, marked running for this runner; None when none is left."""
        with self._tx() as s:
            for _ in range(8):
                item_id = s.scalar(
                    select(Item.id)
                    .where(Item.job_id == job_id, Item.status == ItemStatus.PENDING)
                    .order_by(Item.seq, Item.id)
                    .limit(1)
                )
                if item_id is None:
                    return None
                if self._to_running(s, item_id, runner_id):
                    row = s.get(Item, item_id)
                    assert row is not None
                    s.refresh(row)
                    return view(ItemView, row)
        return None

    def mark_running(self, item_id: int, runner_id: str) -> bool:
        """pending -> running for one item; False if it was not pending (someone else took it)."""
        with self._tx() as s:
            return self._to_running(s, item_id, runner_id)

    @staticmethod
    def _to_running(s: Session, item_id: int, runner_id: str) -> bool:
        res = s.execute(
            update(Item)
            .where(Item.id == item_id, Item.status == ItemStatus.PENDING)
            .values(
                status=ItemStatus.RUNNING,
                runner_id=runner_id,
                attempts=Item.attempts + 1,
                started=utcnow(),
                error=None,
            )
        )
        return rowcount(res) == 1

    def requeue(self, item_id: int) -> None:
        """running -> pending without counting a failure (its engine or endpoint died, not the item)."""
        with self._tx() as s:
            s.execute(
                update(Item)
                .where(Item.id == item_id, Item.status == ItemStatus.RUNNING)
                .values(status=ItemStatus.PENDING, runner_id=None)
            )

    def record_failure(
        self,
        item_id: int,
        error: str,
        *,
        error_type: str | None = None,
        worker: str | None = None,
        prepare_s: float | None = None,
    ) -> None:
        """Mark the item failed with its error (the InputError message names the file and the problem)."""
        with self._tx() as s:
            item = s.get(Item, item_id)
            if item is None:
                raise ArisError(f"no item {item_id} in the store")
            item.status = ItemStatus.FAILED
            item.error = error
            item.worker = worker
            item.prepare_s = prepare_s
            item.finished = utcnow()
            s.add(
                self._audit_row(
                    "item.failed",
                    job=s.get(Job, item.job_id),
                    input_digest=item.input_digest,
                    item_key=item.key,
                    detail=error_type,  # the class only: the message may hold a path
                )
            )

    def rekey(self, item_id: int, key: str, input_digest: str) -> None:
        """Give an item the key of its input as it is now (its file changed since the job was planned)."""
        with self._tx() as s:
            s.execute(update(Item).where(Item.id == item_id).values(key=key, input_digest=input_digest))

    def retry_failed(self, job_id: str) -> int:
        """failed -> pending for every failed item of the job; returns how many."""
        with self._tx() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFoundError(f"no job {job_id!r} in the store {self.url}")
            n = rowcount(
                s.execute(
                    update(Item)
                    .where(Item.job_id == job_id, Item.status == ItemStatus.FAILED)
                    .values(status=ItemStatus.PENDING, error=None)
                )
            )
            if n:
                job.status = JobStatus.STOPPED if job.status != JobStatus.RUNNING else job.status
            s.add(self._audit_row("job.retry", job=job, detail=f"{n} failed items reset"))
            return int(n)

    def items(self, job_id: str, status: str | None = None) -> list[ItemView]:
        with self._read() as s:
            q = select(Item).where(Item.job_id == job_id)
            if status:
                q = q.where(Item.status == status)
            return [view(ItemView, r) for r in s.scalars(q.order_by(Item.seq, Item.id)).all()]

    def pending(self, job_id: str) -> list[ItemView]:
        return self.items(job_id, ItemStatus.PENDING)

    def counts(self, job_id: str) -> dict[str, int]:
        """Items per status, every status present (0 when none)."""
        with self._read() as s:
            rows = s.execute(
                select(Item.status, func.count()).where(Item.job_id == job_id).group_by(Item.status)
            ).all()
        out = dict.fromkeys(ItemStatus.ALL, 0)
        out.update({status: int(n) for status, n in rows})
        out["total"] = sum(out[k] for k in ItemStatus.ALL)
        return out
