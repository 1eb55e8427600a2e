"""One embedder, embedding store and open indexes per process, for the server's routes and MCP tools.

The CLI and ``run_task`` load an embedder per command or job; a server answering many small search
requests keeps one loaded instead. The service is created on first use and closed with the app.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from aris.embed import Embedder, load_embedder

if TYPE_CHECKING:
    from aris.config import ArisSettings
    from aris.embed.index import ImageIndex
    from aris.embed.store import EmbeddingStore


class EmbedService:
    def __init__(self, settings: ArisSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None
        self._store: EmbeddingStore | None = None
        self._indexes: dict[str, ImageIndex] = {}

    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = load_embedder(self.settings)
            return self._embedder

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
            if self._embedder is not None:
                self._embedder.close()
                self._embedder = None


_SHARED: dict[str, EmbedService] = {}
_SHARED_LOCK = threading.Lock()
# The server's service: its tasks (jobs, MCP run_task) use the embedder `aris serve` was configured with,
# loaded once, rather than one loaded per job from the environment.
_DEFAULT: EmbedService | None = None


def set_process_default(service: EmbedService | None) -> None:
    global _DEFAULT
    _DEFAULT = service


def process_default() -> EmbedService | None:
    return _DEFAULT


def shared(settings: ArisSettings) -> EmbedService:
    """The process's service for these settings (the server's routes and its MCP tools share one)."""
    key = repr(
        (
            str(settings.home),
            settings.embed_engine,
            settings.embed_model,
            settings.embed_base_url,
            settings.device,
            settings.dtype,
            settings.embed_index_backend,
            settings.embed_qdrant_url,
        )
    )
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = EmbedService(settings)
        return _SHARED[key]


def close_shared() -> None:
    set_process_default(None)
    with _SHARED_LOCK:
        services = list(_SHARED.values())
        _SHARED.clear()
    for s in services:
        s.close()
