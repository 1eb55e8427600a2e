"""Embeddings kept with their provenance, so the same input is never embedded twice by the same model.

One SQLite file, ``$ARIS_HOME/embed/embeddings.db``. A row is keyed by the embedder's identity key (model,
weights digest, recipe: :func:`aris.embed.identity_key`) and the digest of the pixels the model saw
(:func:`aris.embed.embedding.pixel_digest`), so another model, another recipe or another reading of a
study (a different series, other slide tiles) is a different row, and nothing is reused across them.
Source paths are not stored: file names often hold patient names.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aris.config import ArisSettings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model_key TEXT NOT NULL,
    input_digest TEXT NOT NULL,
    kind TEXT NOT NULL,
    dim INTEGER NOT NULL,
    n_parts INTEGER NOT NULL,
    pooled BLOB NOT NULL,
    parts BLOB NOT NULL,
    labels TEXT NOT NULL,
    provenance TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model_key, input_digest)
);
CREATE TABLE IF NOT EXISTS models (
    model_key TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    first_seen REAL NOT NULL
);
"""


@dataclass
class Stored:
    pooled: np.ndarray
    parts: np.ndarray
    labels: list[str]
    kind: str
    provenance: dict[str, Any]


class EmbeddingStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: ArisSettings) -> EmbeddingStore:
        return cls(settings.home / "embed" / "embeddings.db")

    def get(self, model_key: str, digest: str) -> Stored | None:
        with self._lock:
            row = self._db.execute(
                "SELECT kind, dim, n_parts, pooled, parts, labels, provenance FROM embeddings "
                "WHERE model_key = ? AND input_digest = ?",
                (model_key, digest),
            ).fetchone()
        if row is None:
            return None
        kind, dim, n, pooled, parts, labels, prov = row
        return Stored(
            np.frombuffer(pooled, dtype=np.float32).copy(),
            np.frombuffer(parts, dtype=np.float32).reshape(n, dim).copy(),
            json.loads(labels),
            kind,
            json.loads(prov),
        )

    def put(
        self,
        model_key: str,
        identity: dict[str, Any],
        digest: str,
        *,
        kind: str,
        pooled: np.ndarray,
        parts: np.ndarray,
        labels: list[str],
        provenance: dict[str, Any],
    ) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO models VALUES (?, ?, ?)",
                    (model_key, json.dumps(identity, sort_keys=True, default=str), now),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        model_key,
                        digest,
                        kind,
                        int(parts.shape[1]),
                        int(parts.shape[0]),
                        np.ascontiguousarray(pooled, dtype=np.float32).tobytes(),
                        np.ascontiguousarray(parts, dtype=np.float32).tobytes(),
                        json.dumps(labels),
                        json.dumps(provenance, default=str),
                        now,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def count(self, model_key: str | None = None) -> int:
        with self._lock:
            if model_key is None:
                return int(self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
            return int(
                self._db.execute(
                    "SELECT COUNT(*) FROM embeddings WHERE model_key = ?", (model_key,)
                ).fetchone()[0]
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
