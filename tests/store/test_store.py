"""The store on SQLite: migrations, atomic transitions, leases, results once per key, the audit trail."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from aris.result import Result
from aris.store import ItemStatus, JobBusyError, JobNotFoundError, NewItem, Store
from aris.store.db import MIGRATIONS, head_revision


def _items(n: int, prefix: str = "k") -> list[NewItem]:
    return [
        NewItem(seq=i, key=f"{prefix}{i:03d}", input_ref=f"/in/{i}", input_digest=f"d{i}") for i in range(n)
    ]


def _result(text_: str = "ok") -> Result:
    return Result(task="t", model="m", engine="fake", text=text_)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path / 'aris.db'}")
    yield s
    s.close()


def test_open_runs_the_migrations_and_they_match_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from aris.store.models import Base

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    Store.open(url).close()
    eng = create_engine(url)
    with eng.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == head_revision()
        assert head_revision() == sorted(p.stem for p in MIGRATIONS.glob("versions/0*.py"))[-1]
        # The migration, not create_all, made the schema: it must equal what the models declare.
        assert compare_metadata(ctx, Base.metadata) == []
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
    assert {"jobs", "items", "results", "audit", "alembic_version"} <= tables
    eng.dispose()
    Store.open(url).close()  # opening again is a no-op upgrade


def test_default_url_is_aris_home(aris_home: Path) -> None:
    with Store.open() as s:
        assert s.url == f"sqlite:///{aris_home / 'aris.db'}"
    assert (aris_home / "aris.db").exists()


def test_sqlite_uses_wal_and_a_busy_timeout(store: Store, tmp_path: Path) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    # WAL is recorded in the file itself: a plain sqlite3 connection sees it too.
    raw = sqlite3.connect(tmp_path / "aris.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_item_transitions_and_counts(store: Store) -> None:
    job = store.create_job("t", "m", "fake", {"gen": None}, _items(4))
    assert store.counts(job.id) == {"pending": 4, "running": 0, "done": 0, "failed": 0, "total": 4}
    store.acquire(job.id, "r1")
    a = store.claim_next(job.id, "r1")
    b = store.claim_next(job.id, "r1")
    assert a is not None
    assert b is not None
    assert (a.key, b.key) == ("k000", "k001")  # worklist order
    assert a.status == ItemStatus.RUNNING
    assert a.attempts == 1
    assert store.record_result(a.id, _result(), worker="w0", prepare_s=0.5, generate_s=1.5) is True
    store.record_failure(b.id, "/in/1: empty file", error_type="CorruptFileError")
    assert store.counts(job.id) == {"pending": 2, "running": 0, "done": 1, "failed": 1, "total": 4}
    assert [i.key for i in store.pending(job.id)] == ["k002", "k003"]
    rows = store.export(job.id)
    assert [r["status"] for r in rows] == ["done", "failed", "pending", "pending"]
    assert rows[0]["result"]["text"] == "ok"
    assert rows[0]["worker"] == "w0"
    assert rows[0]["generate_s"] == 1.5
    assert rows[1]["error"] == "/in/1: empty file"
    assert rows[1]["result"] is None
    assert store.release(job.id, "r1") == "stopped"

    assert store.retry_failed(job.id) == 1
    assert store.counts(job.id)["failed"] == 0
    assert store.counts(job.id)["pending"] == 3


def test_results_are_kept_once_per_key(store: Store) -> None:
    same = [NewItem(0, "kk", "/a", "d"), NewItem(1, "kk", "/b", "d")]  # two paths, same content
    job = store.create_job("t", "m", "fake", {}, same)
    store.acquire(job.id, "r")
    first = store.claim_next(job.id, "r")
    second = store.claim_next(job.id, "r")
    assert first is not None
    assert second is not None
    assert store.done_from_existing(second.id) is False  # nothing to reuse yet
    assert store.record_result(first.id, _result("one")) is True
    assert store.done_from_existing(second.id) is True
    assert store.record_result(second.id, _result("two")) is False  # the first result stays
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM results WHERE key='kk'").scalar() == 1
    assert store.result_for("kk")["text"] == "one"
    assert [r["result"]["text"] for r in store.export(job.id)] == ["one", "one"]
    actions = [a.action for a in store.audit_trail(job.id) if a.item_key == "kk"]
    assert actions.count("item.done") == 1
    assert actions.count("item.reused") == 2


def test_resume_resets_items_a_dead_runner_left_running(store: Store) -> None:
    job = store.create_job("t", "m", "fake", {}, _items(3))
    store.acquire(job.id, "dead")
    assert store.claim_next(job.id, "dead") is not None
    assert store.claim_next(job.id, "dead") is not None
    # The holder is gone: a pid that cannot exist on this host.
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE jobs SET runner_pid = 2147483000")
    assert store.acquire(job.id, "next") == 2
    assert store.counts(job.id)["pending"] == 3
    assert [a.action for a in store.audit_trail(job.id)][-1] == "job.resume"


def test_a_live_runner_keeps_its_job(store: Store) -> None:
    job = store.create_job("t", "m", "fake", {}, _items(2))
    store.acquire(job.id, "live")  # this process, heartbeat now
    with pytest.raises(JobBusyError, match=f"pid {os.getpid()}"):
        store.acquire(job.id, "other")
    store.release(job.id, "live")
    assert store.acquire(job.id, "other") == 0


def _claim_all(url: str, job_id: str, runner: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    s = Store.open(url)
    got = []
    while (item := s.claim_next(job_id, runner)) is not None:
        got.append(item.key)
    s.close()
    q.put(got)


def test_concurrent_claims_from_two_processes_never_share_an_item(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'aris.db'}"
    with Store.open(url) as s:
        job = s.create_job("t", "m", "fake", {}, _items(60))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(url, job.id, f"r{i}", q)) for i in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=60), q.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    claimed = got[0] + got[1]
    assert sorted(claimed) == [f"k{i:03d}" for i in range(60)]  # every item once, none twice
    with Store.open(url) as s:
        assert s.counts(job.id)["running"] == 60
        assert {i.attempts for i in s.items(job.id)} == {1}


def test_audit_records_who_without_secrets(store: Store) -> None:
    store.audit("run", task="cxr-report", model="m", engine="llamacpp", input_digest="ab" * 32)
    store.audit("run", actor="key:ops-1", task="cxr-report", model="m", engine="openai")
    trail = store.audit_trail()
    assert trail[0].actor == store.actor
    assert store.actor
    assert trail[1].actor == "key:ops-1"
    assert trail[0].input_digest == "ab" * 32
    assert trail[0].at.tzinfo is not None


def test_unknown_job_and_prefix_lookup(store: Store) -> None:
    job = store.create_job("t", "m", "fake", {}, _items(1))
    assert store.get_job(job.id[:6]).id == job.id
    with pytest.raises(JobNotFoundError, match="no job 'nope'"):
        store.get_job("nope")


def test_bad_urls_are_config_errors() -> None:
    from aris.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        Store.open("mysql://u@h/db")
