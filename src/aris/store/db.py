"""Opening the store: the database engine (SQLite with WAL, or PostgreSQL), migrations, transactions.

Every state change is one transaction. On SQLite, write transactions begin IMMEDIATE (with WAL and a
busy timeout), so two processes that claim items at the same moment serialize instead of failing with
"database is locked" half-way. The schema is created and upgraded by the Alembic migrations in
``aris/store/alembic`` each time a store is opened; the head revision is read from the migrations
themselves, so adding one is adding a file.
"""

from __future__ import annotations

import functools
import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, CursorResult, make_url
from sqlalchemy.orm import Session, sessionmaker

from aris.errors import ArisError, ConfigError

MIGRATIONS = Path(__file__).parent / "alembic"
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


def aware(dt: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every stored time is UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


def rowcount(res: Any) -> int:
    """Rows an UPDATE matched (a CursorResult's rowcount; the typed Result hides it)."""
    return int(cast(CursorResult[Any], res).rowcount)


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


def _config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest migration, read from ``alembic/versions`` (a new migration is only a new file)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return str(head)


def migrate(conn: Connection) -> None:
    """Bring the schema to head with Alembic, inside the caller's transaction."""
    from alembic import command

    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    cfg = _config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


class Database:
    """The connection side of the store: sessions for writes (one transaction each) and for reads."""

    def __init__(self, engine: Engine, *, actor: str | None = None) -> None:
        self.engine = engine
        self.actor = actor or os_user()
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._read = sessionmaker(engine.execution_options(aris_read=True), expire_on_commit=False)

    @staticmethod
    def connect(url: str | None = None) -> Engine:
        """The database engine for ``url`` (default :func:`default_url`), its schema at head."""
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
            if current_revision(conn) != head_revision():
                migrate(conn)
        return engine

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One atomic transaction: committed on success, rolled back on any error."""
        with self._session() as s, s.begin():
            yield s
