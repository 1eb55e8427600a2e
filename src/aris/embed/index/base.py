"""What every vector backend does: integer ids to unit vectors, cosine search, deletes."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class VectorBackend(Protocol):
    """Vectors are L2-normalised float32, so inner product and cosine agree; scores are cosines."""

    name: str

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def delete(self, ids: list[int]) -> None: ...

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]: ...

    def count(self) -> int: ...

    def reset(self, dim: int) -> None:
        """Drop every vector and start again at ``dim`` (re-indexing with another model)."""
        ...

    def close(self) -> None: ...


def open_backend(
    name: str, folder: Path, dim: int, *, index_name: str, url: str | None = None
) -> VectorBackend:
    """The backend ``name`` keeping its data in ``folder`` (Qdrant: at ``url`` when given)."""
    if name == "faiss":
        from aris.embed.index.faiss_backend import FaissBackend

        return FaissBackend(folder / "vectors.faiss", dim)
    if name == "sqlite-vec":
        from aris.embed.index.sqlite_vec import SqliteVecBackend

        return SqliteVecBackend(folder / "vectors.sqlite", dim)
    if name == "qdrant":
        from aris.embed.index.qdrant import QdrantBackend

        return QdrantBackend(folder / "qdrant", dim, collection=f"aris_{index_name}", url=url)
    from aris.errors import ConfigError

    raise ConfigError(f"unknown index backend {name!r}; choose faiss, sqlite-vec or qdrant")
