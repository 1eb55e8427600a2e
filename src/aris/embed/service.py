"""A server's embedding store and open indexes, for its search route and MCP tool."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from aris.embed import Embedder

if TYPE_CHECKING:
    from aris.config import ArisSettings
    from aris.context import Models
    from aris.embed.index import ImageIndex
    from aris.embed.store import EmbeddingStore


class EmbedService:
    """The embedding store and open indexes of one server (or MCP server), beside its models.

    The embedder itself is the run's ``Models``' (the role ``embedder``): one instance per server, the
    same one its jobs and MCP's ``run_task`` use, loaded on first use and closed with the models.
    """

    def __init__(self, models: Models) -> None:
        self.models = models
        self._lock = threading.Lock()
        self._store: EmbeddingStore | None = None
        self._indexes: dict[str, ImageIndex] = {}

    @property
    def settings(self) -> ArisSettings:
        return self.models.settings

    def embedder(self) -> Embedder:
        embedder: Embedder = self.models.get("embedder")
        return embedder

    def store(self) -> EmbeddingStore:
        from aris.embed.store import EmbeddingStore

        with self._lock:
            if self._store is None:
                self._store = EmbeddingStore.open(self.settings)
            return self._store

    def index(self, name: str = "default") -> ImageIndex:
        from aris.embed.index import ImageIndex

        with self._lock:
            if name not in self._indexes:
                self._indexes[name] = ImageIndex.open(self.settings, name)
            return self._indexes[name]

    def close(self) -> None:
        with self._lock:
            for ix in self._indexes.values():
                ix.close()
            self._indexes.clear()
            if self._store is not None:
                self._store.close()
                self._store = None
