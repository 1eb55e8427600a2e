"""The store: one small typed API over SQLite (default) or PostgreSQL, shared by the CLI and the server.

Every state change is one transaction. On SQLite, write transactions begin IMMEDIATE (with WAL and a
busy timeout), so two processes that claim items at the same moment serialize instead of failing with
"database is locked" half-way. The schema is created and upgraded by the Alembic migrations in
``aris/store/alembic`` each time a store is opened.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, create_engine, event, func, select, update
from sqlalchemy.engine import Connection, CursorResult, make_url
from sqlalchemy.orm import Session, sessionmaker

from aris.errors import ArisError, ConfigError
from aris.result import Result
from aris.store.models import AuditRow, Item, ItemStatus, Job, JobStatus, ResultRow, utcnow

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "alembic"
HEAD = "0001_initial"
# A lease whose heartbeat is older than this is dead, whatever host holds it.
LEASE_TTL = timedelta(seconds=60)
_PG_MIGRATION_LOCK = 0x41524953  # "ARIS": one migrating process at a time on PostgreSQL


class JobNotFoundError(ArisError):
    """No job with that id (or id prefix) in the store."""


class JobBusyError(ArisError):
    """Another live process holds the job's lease."""


def default_url() -> str:
    """``ARIS_DB_URL`` if set, else ``sqlite:///$ARIS_HOME/aris.db``."""
    url = os.environ.get("ARIS_DB_URL")
    if url:
        return url
    from aris.config import ArisSettings

    return f"sqlite:///{ArisSettings().home / 'aris.db'}"


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid:{os.getuid()}"


def _aware(dt: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every stored time is UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def _rowcount(res: Any) -> int:
    """Rows an UPDATE matched (a CursorResult's rowcount; the typed Result hides it)."""
    return int(cast(CursorResult[Any], res).rowcount)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


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

    @classmethod
    def of(cls, row: Item) -> ItemView:
        return cls(
            id=row.id,
            job_id=row.job_id,
            seq=row.seq,
            key=row.key,
            input_ref=row.input_ref,
            input_digest=row.input_digest,
            question=row.question,
            kind=row.kind,
            options=dict(row.options or {}),
            task_options=dict(row.task_options or {}),
            status=row.status,
            attempts=row.attempts,
            error=row.error,
            worker=row.worker,
            prepare_s=row.prepare_s,
            generate_s=row.generate_s,
        )


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

    @classmethod
    def of(cls, row: Job) -> JobView:
        return cls(
            id=row.id,
            kind=row.kind,
            task=row.task,
            model=row.model,
            engine=row.engine,
            params=dict(row.params or {}),
            fingerprint=row.fingerprint,
            source=row.source,
            created=_aware(row.created) or utcnow(),
            finished=_aware(row.finished),
            status=row.status,
            runner_pid=row.runner_pid,
        )


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


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads then writes can
        # fail with SQLITE_BUSY at once when another process committed in between.
        # Reads (status, export) begin deferred, so polling a running batch never queues for the lock.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("aris_read") else "BEGIN IMMEDIATE")

    return engine


def migrate(conn: Connection) -> None:
    """Bring the schema to head with Alembic, inside the caller's transaction."""
    from alembic import command
    from alembic.config import Config

    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


class Store:
    """Jobs, items, results and the audit trail. Open with :meth:`open`; safe to share between threads."""

    def __init__(self, engine: Engine, *, actor: str | None = None) -> None:
        self.engine = engine
        self.actor = actor or os_user()
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._read = sessionmaker(engine.execution_options(aris_read=True), expire_on_commit=False)

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | None = None, *, actor: str | None = None) -> Store:
        """Open (creating or upgrading) the store at ``url`` (default :func:`default_url`)."""
        url = url or default_url()
        try:
            dialect = make_url(url).get_backend_name()
        except Exception as e:
            raise ConfigError(f"not a database URL: {url!r} ({e})") from None
        if dialect == "sqlite":
            engine = _sqlite_engine(url)
        elif dialect == "postgresql":
            engine = create_engine(url, pool_pre_ping=True)
        else:
            raise ConfigError(
                f"unsupported database {dialect!r}: use sqlite:///PATH or postgresql+psycopg://…"
            )
        with engine.begin() as conn:
            if current_revision(conn) != HEAD:
                migrate(conn)
        return cls(engine, actor=actor)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One atomic transaction: committed on success, rolled back on any error."""
        with self._session() as s, s.begin():
            yield s

    # -- jobs --------------------------------------------------------------------------------------
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
            return JobView.of(row)

    def find_job(self, fingerprint: str) -> JobView | None:
        """The latest job made from the same task, model, params and items (to resume it)."""
        with self._read() as s:
            row = s.scalars(
                select(Job).where(Job.fingerprint == fingerprint).order_by(Job.created.desc()).limit(1)
            ).first()
            return JobView.of(row) if row else None

    def jobs(self, limit: int = 20) -> list[JobView]:
        with self._read() as s:
            rows = s.scalars(select(Job).order_by(Job.created.desc()).limit(limit)).all()
            return [JobView.of(r) for r in rows]

    def set_job_status(self, job_id: str, status: str) -> None:
        with self._tx() as s:
            s.execute(update(Job).where(Job.id == job_id).values(status=status))

    # -- the runner's lease ------------------------------------------------------------------------
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
            reset = _rowcount(
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
        beat = _aware(job.heartbeat)
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

    # -- items -------------------------------------------------------------------------------------
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
                    return ItemView.of(row)
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
        return _rowcount(res) == 1

    def requeue(self, item_id: int) -> None:
        """running -> pending without counting a failure (its engine or endpoint died, not the item)."""
        with self._tx() as s:
            s.execute(
                update(Item)
                .where(Item.id == item_id, Item.status == ItemStatus.RUNNING)
                .values(status=ItemStatus.PENDING, runner_id=None)
            )

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

    def retry_failed(self, job_id: str) -> int:
        """failed -> pending for every failed item of the job; returns how many."""
        with self._tx() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFoundError(f"no job {job_id!r} in the store {self.url}")
            n = _rowcount(
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
            return [ItemView.of(r) for r in s.scalars(q.order_by(Item.seq, Item.id)).all()]

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

    # -- results -----------------------------------------------------------------------------------
    def result_for(self, key: str) -> dict[str, Any] | None:
        with self._read() as s:
            data = s.scalar(select(ResultRow.data).where(ResultRow.key == key))
            return dict(data) if data is not None else None

    def export(self, job_id: str) -> list[dict[str, Any]]:
        """One row per item, in worklist order, with its result (if done) or error (if failed)."""
        self.get_job(job_id)
        with self._read() as s:
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

    # -- audit -------------------------------------------------------------------------------------
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
            return [
                AuditView(
                    at=_aware(r.at) or r.at,
                    actor=r.actor,
                    action=r.action,
                    task=r.task,
                    model=r.model,
                    engine=r.engine,
                    input_digest=r.input_digest,
                    job_id=r.job_id,
                    item_key=r.item_key,
                    detail=r.detail,
                )
                for r in rows
            ]
