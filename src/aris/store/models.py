"""The store's tables: jobs, their items, results by item key, and the audit trail.

A *job* is a batch (or one run started from the server); an *item* is one input (with its question)
of that job. Results are kept once per item key, a hash of what determines the answer (input bytes,
task, model, params, question), so the same work is never recorded twice, across jobs too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class JobStatus:
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"  # nothing pending or running is left (failed items may remain: see counts)
    STOPPED = "stopped"  # the runner ended with items left to do (interrupted, or every engine failed)


class ItemStatus:
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    ALL = ("pending", "running", "done", "failed")


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="batch")  # batch | run
    task: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(512))
    engine: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # sha256 over task, model, params and the items: the same command finds (and resumes) its job.
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str | None] = mapped_column(Text, default=None)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)
    # The lease of the process running the job; a dead holder's lease is taken over on resume.
    runner_id: Mapped[str | None] = mapped_column(String(32), default=None)
    runner_host: Mapped[str | None] = mapped_column(String(255), default=None)
    runner_pid: Mapped[int | None] = mapped_column(Integer, default=None)
    heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("job_id", "key", "input_ref", name="uq_items_job_key_input"),
        Index("ix_items_job_status", "job_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # position in the worklist
    key: Mapped[str] = mapped_column(String(64), index=True)
    input_ref: Mapped[str] = mapped_column(Text, default="")  # path(s), "|"-separated; "" for text only
    input_digest: Mapped[str] = mapped_column(String(64))
    question: Mapped[str | None] = mapped_column(Text, default=None)
    kind: Mapped[str] = mapped_column(String(16), default="auto")
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # reader options
    task_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    runner_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # The engine or endpoint that served the item.
    worker: Mapped[str | None] = mapped_column(String(255), default=None)
    prepare_s: Mapped[float | None] = mapped_column(Float, default=None)
    generate_s: Mapped[float | None] = mapped_column(Float, default=None)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class ResultRow(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # aris.result.Result as JSON
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditRow(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))  # OS user, or "key:<id>" for an API key (never the key)
    action: Mapped[str] = mapped_column(String(64))
    task: Mapped[str | None] = mapped_column(String(64), default=None)
    model: Mapped[str | None] = mapped_column(String(512), default=None)
    engine: Mapped[str | None] = mapped_column(String(32), default=None)
    input_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    job_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    item_key: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)  # counts and error classes, no PHI
