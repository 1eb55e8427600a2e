"""sqlite-vec: vectors in a ``vec0`` virtual table of one SQLite file, exact cosine KNN.

Python's own ``sqlite3`` is often built without loadable extensions (pyenv's and some distributions'
are), so the extension is loaded through ``apsw``, which bundles a current SQLite that allows it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np


class SqliteVecBackend:
    name = "sqlite-vec"

    def __init__(self, path: Path, dim: int) -> None:
        import apsw
        import sqlite_vec

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db: Any = apsw.Connection(str(self.path))
        self.db.enable_load_extension(True)
        self.db.load_extension(sqlite_vec.loadable_path())
        self.db.enable_load_extension(False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.set_busy_timeout(30000)
        self._lock = threading.Lock()
        self.dim = dim
        self._create(dim)

    def _create(self, dim: int) -> None:
        self.db.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS vec USING vec0(embedding float[{int(dim)}] distance_metric=cosine)"
        )

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        rows = [
            (int(i), np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for i, v in zip(ids, vectors, strict=True)
        ]
        with self._lock, self.db:
            self.db.executemany("INSERT INTO vec(rowid, embedding) VALUES (?, ?)", rows)

    def delete(self, ids: list[int]) -> None:
        with self._lock, self.db:
            self.db.executemany("DELETE FROM vec WHERE rowid = ?", [(int(i),) for i in ids])

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        q = np.ascontiguousarray(query, dtype=np.float32).tobytes()
        with self._lock:
            rows = self.db.execute(
                "SELECT rowid, distance FROM vec WHERE embedding MATCH ? AND k = ? ORDER BY distance",
                (q, int(k)),
            ).fetchall()
        return [(int(r), 1.0 - float(d)) for r, d in rows]

    def count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM vec").fetchone()[0])

    def reset(self, dim: int) -> None:
        with self._lock, self.db:
            self.db.execute("DROP TABLE IF EXISTS vec")
            self.dim = dim
            self._create(dim)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
