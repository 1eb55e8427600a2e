"""The node's state in the project's store: received studies and instances, routed jobs, sends.

Four tables beside the store's own (migration ``0002_pacs``), on the same database, so ``aris node
status`` and a restarted node see what a running node did. Each change is one transaction.

Study life: ``receiving`` (instances arriving) -> after ``idle_s`` quiet, checked: ``waiting`` (looks
partial: a push broke off, or the PACS holds more instances than arrived) -> ``routed`` (jobs made),
``no_rule`` (nothing to run; the reason names each series and why) or ``failed`` (still partial after
``wait_s``; the reason says what is missing). New instances of a finished study set it back to
``receiving``; jobs are keyed by their content, so the same study pushed twice makes no new job.

Job life: ``pending`` -> ``running`` -> ``done`` | ``failed``. Send life: ``pending`` (retried with
backoff while the destination is down) -> ``sent``, or ``failed`` when the destination refused it
(``aris node retry`` queues it again). Rows hold UIDs, SOP classes and counts: never patient
names or IDs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from aris.store import Store
from aris.store.models import Base, utcnow

logger = logging.getLogger(__name__)


class StudyState:
    RECEIVING = "receiving"
    WAITING = "waiting"
    ROUTED = "routed"
    NO_RULE = "no_rule"
    FAILED = "failed"
    OPEN = (RECEIVING, WAITING)


class JobState:
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class SendState:
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class PacsStudy(Base):
    __tablename__ = "pacs_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RECEIVING, index=True)
    calling_ae: Mapped[str | None] = mapped_column(String(16), default=None)
    n_instances: Mapped[int] = mapped_column(Integer, default=0)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    first_received: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_received: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class PacsInstance(Base):
    __tablename__ = "pacs_instances"
    __table_args__ = (
        UniqueConstraint("study_uid", "sop_uid", name="uq_pacs_instances_study_sop"),
        Index("ix_pacs_instances_study", "study_uid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64))
    sop_uid: Mapped[str] = mapped_column(String(64))
    sop_class: Mapped[str] = mapped_column(String(64))
    transfer_syntax: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(16), default=None)
    body_part: Mapped[str | None] = mapped_column(String(64), default=None)
    series_description: Mapped[str | None] = mapped_column(String(64), default=None)
    series_number: Mapped[int | None] = mapped_column(Integer, default=None)
    instance_number: Mapped[int | None] = mapped_column(Integer, default=None)
    pixels: Mapped[int | None] = mapped_column(Integer, default=None)  # Rows x Columns
    path: Mapped[str] = mapped_column(Text)  # relative to the inbox
    received: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PacsJob(Base):
    __tablename__ = "pacs_jobs"
    __table_args__ = (Index("ix_pacs_jobs_study", "study_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str | None] = mapped_column(String(64), default=None)
    rule: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    question: Mapped[str | None] = mapped_column(Text, default=None)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inputs: Mapped[list[str]] = mapped_column(JSON, default=list)  # inbox-relative files or folders
    send_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    gsps: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text, default=None)  # what was skipped, and why
    status: Mapped[str] = mapped_column(String(16), default=JobState.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    store_job_id: Mapped[str | None] = mapped_column(String(32), default=None)
    item_key: Mapped[str | None] = mapped_column(String(64), default=None)
    sr_uid: Mapped[str | None] = mapped_column(String(64), default=None)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class PacsSend(Base):
    __tablename__ = "pacs_sends"
    __table_args__ = (
        UniqueConstraint("sop_uid", "destination", name="uq_pacs_sends_sop_destination"),
        Index("ix_pacs_sends_status", "status", "next_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sop_uid: Mapped[str] = mapped_column(String(64))
    what: Mapped[str] = mapped_column(String(8))  # sr | gsps
    study_uid: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)  # the encoded object in the outbox
    origin: Mapped[str | None] = mapped_column(String(64), default=None)  # "node job 3", "batch <id>"
    item_key: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default=SendState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


# -- views (plain data handed out of a session) ---------------------------------------------------------


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


@dataclass(frozen=True)
class InstanceMeta:
    """What the node keeps of a received instance: where it is and what routing looks at."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str
    transfer_syntax: str
    path: str
    modality: str | None = None
    body_part: str | None = None
    series_description: str | None = None
    series_number: int | None = None
    instance_number: int | None = None
    pixels: int | None = None

    @classmethod
    def of(cls, row: PacsInstance) -> InstanceMeta:
        return cls(
            row.study_uid,
            row.series_uid,
            row.sop_uid,
            row.sop_class,
            row.transfer_syntax,
            row.path,
            row.modality,
            row.body_part,
            row.series_description,
            row.series_number,
            row.instance_number,
            row.pixels,
        )


@dataclass(frozen=True)
class StudyView:
    study_uid: str
    state: str
    calling_ae: str | None
    n_instances: int
    interrupted: bool
    reason: str | None
    first_received: datetime
    last_received: datetime
    completed: datetime | None

    @classmethod
    def of(cls, row: PacsStudy) -> StudyView:
        return cls(
            row.study_uid,
            row.state,
            row.calling_ae,
            row.n_instances,
            row.interrupted,
            row.reason,
            _aware(row.first_received) or row.first_received,
            _aware(row.last_received) or row.last_received,
            _aware(row.completed),
        )


@dataclass(frozen=True)
class NewJob:
    key: str
    study_uid: str
    series_uid: str | None
    rule: str
    task: str
    kind: str
    inputs: list[str]
    send_to: list[str]
    question: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    gsps: bool = False
    note: str | None = None


@dataclass(frozen=True)
class JobView:
    id: int
    key: str
    study_uid: str
    series_uid: str | None
    rule: str
    task: str
    kind: str
    question: str | None
    options: dict[str, Any]
    inputs: list[str]
    send_to: list[str]
    gsps: bool
    note: str | None
    status: str
    attempts: int
    error: str | None
    store_job_id: str | None
    item_key: str | None
    sr_uid: str | None
    created: datetime
    finished: datetime | None

    @classmethod
    def of(cls, row: PacsJob) -> JobView:
        return cls(
            row.id,
            row.key,
            row.study_uid,
            row.series_uid,
            row.rule,
            row.task,
            row.kind,
            row.question,
            dict(row.options or {}),
            list(row.inputs or []),
            list(row.send_to or []),
            row.gsps,
            row.note,
            row.status,
            row.attempts,
            row.error,
            row.store_job_id,
            row.item_key,
            row.sr_uid,
            _aware(row.created) or row.created,
            _aware(row.finished),
        )


@dataclass(frozen=True)
class SendView:
    id: int
    sop_uid: str
    what: str
    study_uid: str
    destination: str
    path: str
    origin: str | None
    item_key: str | None
    status: str
    attempts: int
    next_at: datetime
    last_error: str | None
    created: datetime
    sent: datetime | None

    @classmethod
    def of(cls, row: PacsSend) -> SendView:
        return cls(
            row.id,
            row.sop_uid,
            row.what,
            row.study_uid,
            row.destination,
            row.path,
            row.origin,
            row.item_key,
            row.status,
            row.attempts,
            _aware(row.next_at) or row.next_at,
            row.last_error,
            _aware(row.created) or row.created,
            _aware(row.sent),
        )


class PacsState:
    """The node's tables, on a :class:`~aris.store.Store`'s database. Safe to share between threads."""

    def __init__(self, store: Store) -> None:
        self.store = store  # opened at the migrations' head, so these tables exist
        engine = store.engine
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._read = sessionmaker(engine.execution_options(aris_read=True), expire_on_commit=False)

    @classmethod
    def open(cls, url: str | None = None) -> PacsState:
        return cls(Store.open(url, actor="aris-node"))

    def close(self) -> None:
        self.store.close()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._session() as s, s.begin():
            yield s

    # -- receiving --------------------------------------------------------------------------------
    def record_instance(self, meta: InstanceMeta, calling_ae: str | None) -> bool:
        """Note a received instance (its file is already written). False when it was known already.

        Either way the study is (again) receiving and its quiet timer restarts.
        """
        now = utcnow()
        with self._tx() as s:
            study = s.scalar(select(PacsStudy).where(PacsStudy.study_uid == meta.study_uid))
            if study is None:
                study = PacsStudy(
                    study_uid=meta.study_uid,
                    state=StudyState.RECEIVING,
                    calling_ae=calling_ae,
                    n_instances=0,
                    interrupted=False,
                    first_received=now,
                    last_received=now,
                )
                s.add(study)
                s.flush()
            known = s.scalar(
                select(PacsInstance.id).where(
                    PacsInstance.study_uid == meta.study_uid, PacsInstance.sop_uid == meta.sop_uid
                )
            )
            if known is None:
                s.add(
                    PacsInstance(
                        study_uid=meta.study_uid,
                        series_uid=meta.series_uid,
                        sop_uid=meta.sop_uid,
                        sop_class=meta.sop_class,
                        transfer_syntax=meta.transfer_syntax,
                        modality=meta.modality,
                        body_part=meta.body_part,
                        series_description=meta.series_description,
                        series_number=meta.series_number,
                        instance_number=meta.instance_number,
                        pixels=meta.pixels,
                        path=meta.path,
                        received=now,
                    )
                )
                study.n_instances += 1
            if study.state not in StudyState.OPEN:
                study.reason = None
            study.state = StudyState.RECEIVING
            study.last_received = now
            study.calling_ae = calling_ae or study.calling_ae
            return known is None

    def set_interrupted(self, study_uids: Sequence[str], interrupted: bool) -> None:
        if not study_uids:
            return
        with self._tx() as s:
            s.execute(
                update(PacsStudy)
                .where(PacsStudy.study_uid.in_(list(study_uids)))
                .values(interrupted=interrupted)
            )

    def due_studies(self, idle_s: float) -> list[StudyView]:
        """Open studies quiet for at least ``idle_s`` seconds."""
        cutoff = utcnow() - timedelta(seconds=idle_s)
        with self._read() as s:
            rows = s.scalars(
                select(PacsStudy)
                .where(PacsStudy.state.in_(StudyState.OPEN), PacsStudy.last_received <= cutoff)
                .order_by(PacsStudy.last_received)
            ).all()
            return [StudyView.of(r) for r in rows]

    def study(self, study_uid: str) -> StudyView | None:
        with self._read() as s:
            row = s.scalar(select(PacsStudy).where(PacsStudy.study_uid == study_uid))
            return StudyView.of(row) if row else None

    def instances(self, study_uid: str) -> list[InstanceMeta]:
        with self._read() as s:
            rows = s.scalars(
                select(PacsInstance).where(PacsInstance.study_uid == study_uid).order_by(PacsInstance.id)
            ).all()
            return [InstanceMeta.of(r) for r in rows]

    def set_study(
        self, study_uid: str, state: str, reason: str | None, *, seen: datetime | None = None
    ) -> bool:
        """Set a study's state, unless something arrived after ``seen`` (then it is receiving again)."""
        with self._tx() as s:
            q = update(PacsStudy).where(PacsStudy.study_uid == study_uid)
            if seen is not None:
                q = q.where(PacsStudy.last_received <= seen)
            values: dict[str, Any] = {"state": state, "reason": reason}
            if state not in StudyState.OPEN:
                values["completed"] = utcnow()
            res = s.execute(q.values(**values))
            return bool(getattr(res, "rowcount", 0))

    # -- jobs -------------------------------------------------------------------------------------
    def add_job(self, job: NewJob) -> tuple[JobView, bool]:
        """The job with this key: a new one, or the one made before (the same content and rule)."""
        try:
            with self._tx() as s:
                row = PacsJob(
                    key=job.key,
                    study_uid=job.study_uid,
                    series_uid=job.series_uid,
                    rule=job.rule,
                    task=job.task,
                    kind=job.kind,
                    question=job.question,
                    options=job.options,
                    inputs=job.inputs,
                    send_to=job.send_to,
                    gsps=job.gsps,
                    note=job.note,
                    status=JobState.PENDING,
                    attempts=0,
                    created=utcnow(),
                )
                s.add(row)
                s.flush()
                return JobView.of(row), True
        except IntegrityError:
            with self._read() as s:
                found = s.scalar(select(PacsJob).where(PacsJob.key == job.key))
                assert found is not None
                return JobView.of(found), False

    def claim_job(self) -> JobView | None:
        """The oldest pending job, marked running."""
        with self._tx() as s:
            row = s.scalar(
                select(PacsJob).where(PacsJob.status == JobState.PENDING).order_by(PacsJob.id).limit(1)
            )
            if row is None:
                return None
            row.status = JobState.RUNNING
            row.attempts += 1
            row.started = utcnow()
            row.error = None
            return JobView.of(row)

    def requeue_running(self) -> int:
        """Jobs a stopped node left running go back to pending (at start)."""
        with self._tx() as s:
            res = s.execute(
                update(PacsJob).where(PacsJob.status == JobState.RUNNING).values(status=JobState.PENDING)
            )
            return int(getattr(res, "rowcount", 0))

    def set_job_links(self, job_id: int, store_job_id: str, item_key: str) -> None:
        with self._tx() as s:
            s.execute(
                update(PacsJob)
                .where(PacsJob.id == job_id)
                .values(store_job_id=store_job_id, item_key=item_key)
            )

    def finish_job(
        self, job_id: int, status: str, *, error: str | None = None, sr_uid: str | None = None
    ) -> None:
        with self._tx() as s:
            s.execute(
                update(PacsJob)
                .where(PacsJob.id == job_id)
                .values(status=status, error=error, sr_uid=sr_uid, finished=utcnow())
            )

    def retry_jobs(self) -> int:
        """failed -> pending for every failed job."""
        with self._tx() as s:
            res = s.execute(
                update(PacsJob)
                .where(PacsJob.status == JobState.FAILED)
                .values(status=JobState.PENDING, error=None)
            )
            return int(getattr(res, "rowcount", 0))

    def job(self, job_id: int) -> JobView | None:
        with self._read() as s:
            row = s.get(PacsJob, job_id)
            return JobView.of(row) if row else None

    # -- sends ------------------------------------------------------------------------------------
    def queue_send(
        self,
        sop_uid: str,
        what: str,
        study_uid: str,
        destination: str,
        path: str,
        *,
        origin: str | None = None,
        item_key: str | None = None,
    ) -> tuple[SendView, bool]:
        """Queue an object for a destination; the one already queued (or sent) when it exists."""
        try:
            with self._tx() as s:
                row = PacsSend(
                    sop_uid=sop_uid,
                    what=what,
                    study_uid=study_uid,
                    destination=destination,
                    path=path,
                    origin=origin,
                    item_key=item_key,
                    status=SendState.PENDING,
                    attempts=0,
                    next_at=utcnow(),
                    created=utcnow(),
                )
                s.add(row)
                s.flush()
                return SendView.of(row), True
        except IntegrityError:
            with self._read() as s:
                found = s.scalar(
                    select(PacsSend).where(PacsSend.sop_uid == sop_uid, PacsSend.destination == destination)
                )
                assert found is not None
                return SendView.of(found), False

    def due_sends(self, limit: int = 20) -> list[SendView]:
        with self._read() as s:
            rows = s.scalars(
                select(PacsSend)
                .where(PacsSend.status == SendState.PENDING, PacsSend.next_at <= utcnow())
                .order_by(PacsSend.next_at, PacsSend.id)
                .limit(limit)
            ).all()
            return [SendView.of(r) for r in rows]

    def send_done(self, send_id: int) -> None:
        with self._tx() as s:
            s.execute(
                update(PacsSend)
                .where(PacsSend.id == send_id)
                .values(status=SendState.SENT, attempts=PacsSend.attempts + 1, sent=utcnow(), last_error=None)
            )

    def send_failed(self, send_id: int, error: str, *, retry_in: float | None) -> None:
        """A failed attempt: tried again in ``retry_in`` seconds, or (None) failed until retried by hand."""
        values: dict[str, Any] = {"attempts": PacsSend.attempts + 1, "last_error": error}
        if retry_in is None:
            values["status"] = SendState.FAILED
        else:
            values["next_at"] = utcnow() + timedelta(seconds=retry_in)
        with self._tx() as s:
            s.execute(update(PacsSend).where(PacsSend.id == send_id).values(**values))

    def retry_sends(self) -> int:
        """Every failed send, and every pending one still waiting out its backoff, is due now."""
        with self._tx() as s:
            res = s.execute(
                update(PacsSend)
                .where(PacsSend.status.in_([SendState.FAILED, SendState.PENDING]))
                .values(status=SendState.PENDING, next_at=utcnow())
            )
            return int(getattr(res, "rowcount", 0))

    # -- status -----------------------------------------------------------------------------------
    def studies(self, limit: int = 50) -> list[StudyView]:
        with self._read() as s:
            rows = s.scalars(select(PacsStudy).order_by(PacsStudy.last_received.desc()).limit(limit)).all()
            return [StudyView.of(r) for r in rows]

    def jobs(self, limit: int = 50, *, study_uid: str | None = None) -> list[JobView]:
        with self._read() as s:
            q = select(PacsJob)
            if study_uid is not None:
                q = q.where(PacsJob.study_uid == study_uid)
            rows = s.scalars(q.order_by(PacsJob.id.desc()).limit(limit)).all()
            return [JobView.of(r) for r in rows]

    def sends(self, limit: int = 50, *, study_uid: str | None = None) -> list[SendView]:
        with self._read() as s:
            q = select(PacsSend)
            if study_uid is not None:
                q = q.where(PacsSend.study_uid == study_uid)
            rows = s.scalars(q.order_by(PacsSend.id.desc()).limit(limit)).all()
            return [SendView.of(r) for r in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per state, for studies, jobs and sends."""
        out: dict[str, dict[str, int]] = {}
        with self._read() as s:
            for name, table, col in (
                ("studies", PacsStudy, PacsStudy.state),
                ("jobs", PacsJob, PacsJob.status),
                ("sends", PacsSend, PacsSend.status),
            ):
                rows = s.execute(select(col, func.count()).select_from(table).group_by(col)).all()
                out[name] = {str(k): int(n) for k, n in rows}
        return out


__all__ = [
    "InstanceMeta",
    "JobState",
    "JobView",
    "NewJob",
    "PacsState",
    "SendState",
    "SendView",
    "StudyState",
    "StudyView",
]
