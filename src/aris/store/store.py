"""The store: one small typed API over SQLite (default) or PostgreSQL, shared by the CLI, batch and the
server. Its parts live beside it, one concern a module: opening and migrations (:mod:`~aris.store.db`),
jobs (:mod:`~aris.store.jobs`), the queue and leases (:mod:`~aris.store.queue`), results by content key
(:mod:`~aris.store.results`) and the audit trail (:mod:`~aris.store.audit`).
"""

from __future__ import annotations

from aris.store.jobs import Jobs
from aris.store.queue import Queue
from aris.store.results import Results


class Store(Jobs, Queue, Results):
    """Jobs, items, results and the audit trail. Open with :meth:`open`; safe to share between threads."""

    @classmethod
    def open(cls, url: str | None = None, *, actor: str | None = None) -> Store:
        """Open (creating or upgrading) the store at ``url`` (default ``ARIS_DB_URL`` or the home's)."""
        return cls(cls.connect(url), actor=actor)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
