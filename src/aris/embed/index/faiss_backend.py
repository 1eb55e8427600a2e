"""faiss (CPU): exact inner-product search in memory, vectors kept durably in SQLite.

``IndexIDMap2(IndexFlatIP)`` is exact search (BLAS matrix-vector products) under our integer ids,
with deletes. Rewriting a faiss file on every add would write the whole index each time (quadratic
over an archive), so the vectors live in a small SQLite table (appends and deletes are cheap and
transactional) and the faiss index is built from it on open. A snapshot file written on close, tagged
with the table's generation, makes the next open fast; a stale or missing snapshot (a crash, another
process adding) is rebuilt from the table. Searches notice another process's changes by the
generation and reload.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)
_BATCH = 50_000


class FaissBackend:
    name = "faiss"

    def __init__(self, path: Path, dim: int) -> None:
        import faiss

        self._faiss = faiss
        self.path = Path(path)  # the snapshot; the vectors are in <path>.sqlite
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(
            self.path.with_suffix(".sqlite"), check_same_thread=False, isolation_level=None
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._lock = threading.Lock()
        self.dim = dim
        stored = self._meta("dim")
        if stored is not None and int(stored) != dim:
            self._clear(dim)
        elif stored is None:
            self._set("dim", str(dim))
        self.index: Any = None
        self._gen = -1
        self._dirty = False
        self._load()

    # -- bookkeeping --------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _db_gen(self) -> int:
        return int(self._meta("gen") or 0)

    def _bump(self) -> None:
        self._set("gen", str(self._db_gen() + 1))

    def _new(self) -> Any:
        return self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(self.dim))

    def _snapshot_gen(self) -> int | None:
        tag = self.path.with_suffix(".gen")
        try:
            return int(tag.read_text())
        except (OSError, ValueError):
            return None

    def _load(self) -> None:
        gen = self._db_gen()
        if self.path.exists() and self._snapshot_gen() == gen:
            self.index = self._faiss.read_index(str(self.path))
        else:
            t0 = time.perf_counter()
            self.index = self._new()
            cur = self.db.execute("SELECT id, v FROM vectors ORDER BY id")
            while rows := cur.fetchmany(_BATCH):
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(
                    len(rows), self.dim
                )
                self.index.add_with_ids(vecs, ids)
            self._dirty = True  # a snapshot would make the next open fast
            logger.info("faiss index rebuilt: %d vectors, %.1fs", self.index.ntotal, time.perf_counter() - t0)
        self._gen = gen

    def _fresh(self) -> None:
        if self._db_gen() != self._gen:
            self._load()

    # -- the backend interface ----------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        ids64 = np.asarray(ids, dtype=np.int64)
        with self._lock:
            self._fresh()
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    "INSERT INTO vectors VALUES (?, ?)",
                    ((int(i), v.tobytes()) for i, v in zip(ids64, vecs, strict=True)),
                )
                self._bump()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.index.add_with_ids(vecs, ids64)
            self._gen, self._dirty = self._db_gen(), True

    def delete(self, ids: list[int]) -> None:
        with self._lock:
            self._fresh()
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany("DELETE FROM vectors WHERE id = ?", [(int(i),) for i in ids])
                self._bump()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))
            self._gen, self._dirty = self._db_gen(), True

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        with self._lock:
            self._fresh()
            if self.index.ntotal == 0:
                return []
            scores, ids = self.index.search(np.ascontiguousarray(query[None, :], dtype=np.float32), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def count(self) -> int:
        with self._lock:
            self._fresh()
            return int(self.index.ntotal)

    def _clear(self, dim: int) -> None:
        self.db.execute("DELETE FROM vectors")
        self._set("dim", str(dim))
        self._bump()

    def reset(self, dim: int) -> None:
        with self._lock:
            self.dim = dim
            self._clear(dim)
            self.index = self._new()
            self._gen, self._dirty = self._db_gen(), True

    def flush(self) -> None:
        """Write the snapshot (tagged with the generation it holds) for a fast next open."""
        with self._lock:
            if not self._dirty or self.index is None or self._db_gen() != self._gen:
                return
            tmp = self.path.with_suffix(".tmp")
            self._faiss.write_index(self.index, str(tmp))
            os.replace(tmp, self.path)
            self.path.with_suffix(".gen").write_text(str(self._gen))
            self._dirty = False

    def close(self) -> None:
        if self.index is not None:
            self.flush()
            self.index = None
            self.db.close()
