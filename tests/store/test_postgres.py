"""The same store on a real PostgreSQL: migrations and a small job, claimed from two processes."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from sqlalchemy import create_engine

from aris.result import Result
from aris.store import NewItem, Store
from aris.store.db import head_revision

pytestmark = pytest.mark.postgres


def _claim_all(url: str, job_id: str, runner: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    s = Store.open(url)
    got = []
    while (item := s.claim_next(job_id, runner)) is not None:
        s.record_result(item.id, Result(task="t", model="m", engine="fake", text=item.key))
        got.append(item.key)
    s.close()
    q.put(got)


def test_migrations_and_a_job_on_postgresql(postgres_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from aris.store.models import Base

    with Store.open(postgres_url) as s:
        assert s.engine.dialect.name == "postgresql"
        job = s.create_job(
            "t", "m", "fake", {"gen": None}, [NewItem(i, f"k{i:02d}", f"/in/{i}", "d") for i in range(30)]
        )
        s.acquire(job.id, "driver")

    eng = create_engine(postgres_url)
    with eng.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == head_revision()
        assert compare_metadata(ctx, Base.metadata) == []
    eng.dispose()

    # Two processes claim and record at once (two migrations racing at open, too).
    mpctx = mp.get_context("fork")
    q = mpctx.Queue()
    procs = [mpctx.Process(target=_claim_all, args=(postgres_url, job.id, f"r{i}", q)) for i in range(2)]
    for p in procs:
        p.start()
    got = q.get(timeout=60) + q.get(timeout=60)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sorted(got) == [f"k{i:02d}" for i in range(30)]

    with Store.open(postgres_url) as s:
        assert s.counts(job.id) == {"pending": 0, "running": 0, "done": 30, "failed": 0, "total": 30}
        assert s.release(job.id, "driver") == "done"
        rows = s.export(job.id)
        assert [r["result"]["text"] for r in rows] == [f"k{i:02d}" for i in range(30)]
        done = [a.item_key for a in s.audit_trail(job.id, "item.done")]
        assert sorted(done) == sorted(got)
