"""faiss (CPU): an exact inner-product index with ids, saved to one file after every change.

``IndexIDMap2(IndexFlatIP)`` is exact search (BLAS matrix-vector products), keeps our integer ids and
supports deletes; the file is rewritten atomically, and reloaded when another process changed it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np


class FaissBackend:
    name = "faiss"

    def __init__(self, path: Path, dim: int) -> None:
        import faiss

        self._faiss = faiss
        self.path = Path(path)
        self.dim = dim
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self.index: Any = None
        self._load()

    def _new(self, dim: int) -> Any:
        return self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(dim))

    def _load(self) -> None:
        if self.path.exists():
            self.index = self._faiss.read_index(str(self.path))
            self._mtime = self.path.stat().st_mtime_ns
            if self.index.d != self.dim:
                self.index = self._new(self.dim)
        else:
            self.index = self._new(self.dim)
            self._mtime = None

    def _fresh(self) -> None:
        """Reload when the file changed under us (the CLI added while a server holds the index)."""
        mtime = self.path.stat().st_mtime_ns if self.path.exists() else None
        if mtime != self._mtime:
            self._load()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        self._faiss.write_index(self.index, str(tmp))
        os.replace(tmp, self.path)
        self._mtime = self.path.stat().st_mtime_ns

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self._fresh()
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )
            self._save()

    def delete(self, ids: list[int]) -> None:
        with self._lock:
            self._fresh()
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))
            self._save()

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

    def reset(self, dim: int) -> None:
        with self._lock:
            self.dim = dim
            self.index = self._new(dim)
            self._save()

    def close(self) -> None:
        self.index = None
