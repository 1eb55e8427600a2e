"""Qdrant through its official client: a server URL for teams, or its local mode (files, one process).

Local mode (``QdrantClient(path=...)``) is for tests and single users: one process at a time may open
its folder. With ``embed_qdrant_url`` the vectors live in the team's Qdrant server.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np


class QdrantBackend:
    name = "qdrant"

    def __init__(self, folder: Path, dim: int, *, collection: str, url: str | None = None) -> None:
        from qdrant_client import QdrantClient

        self.collection = collection
        self.dim = dim
        self._lock = threading.Lock()
        if url:
            self.client: Any = QdrantClient(url=url)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                self.client = QdrantClient(path=str(folder))
            except RuntimeError as e:  # its lock: another process (a running server) has the folder open
                from aris.errors import ConfigError

                raise ConfigError(
                    f"the Qdrant index folder is in use by another process ({e}); stop it, or use a Qdrant "
                    "server (--embed-qdrant-url)"
                ) from e
        self._ensure(dim)

    def _ensure(self, dim: int) -> None:
        from qdrant_client import models

        if not self.client.collection_exists(self.collection):
            self.client.create_collection(
                self.collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
            )

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        from qdrant_client import models

        with self._lock:
            self.client.upsert(
                self.collection,
                points=models.Batch(
                    ids=[int(i) for i in ids], vectors=np.asarray(vectors, np.float32).tolist()
                ),
                wait=True,
            )

    def delete(self, ids: list[int]) -> None:
        from qdrant_client import models

        with self._lock:
            self.client.delete(
                self.collection, points_selector=models.PointIdsList(points=[int(i) for i in ids]), wait=True
            )

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        with self._lock:
            res = self.client.query_points(
                self.collection, query=np.asarray(query, np.float32).tolist(), limit=int(k)
            )
        return [(int(p.id), float(p.score)) for p in res.points]

    def count(self) -> int:
        with self._lock:
            return int(self.client.count(self.collection, exact=True).count)

    def reset(self, dim: int) -> None:
        with self._lock:
            if self.client.collection_exists(self.collection):
                self.client.delete_collection(self.collection)
            self.dim = dim
            self._ensure(dim)

    def close(self) -> None:
        self.client.close()
