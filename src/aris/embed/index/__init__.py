"""Image search over your own archive: add studies, search by image or by text, delete, re-index.

An index is a folder ``$ARIS_HOME/embed/index/<name>/``: a catalog (SQLite: each item's display name,
source path, kind, DICOM UIDs, content and pixel digests) and a vector backend holding one pooled
MedSigLIP embedding per item under the same integer id:

* ``faiss`` (default; embedded, exact inner-product search, fastest here: see ``bench/embed_index.py``),
* ``sqlite-vec`` (embedded, one SQLite file, exact cosine KNN),
* ``qdrant`` (the official client: a Qdrant server URL for teams, local files otherwise).

The index remembers the embedder identity it was built with. Adding or searching with another model
or recipe is refused (mixing embedding spaces would return nonsense ranked as if it were sense);
``reindex`` re-embeds every item from its source with the current model. Items already indexed (same
file content, same reading) are skipped; embeddings come from the store when the model has seen the
pixels before, so nothing is embedded twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aris.embed import Embedder, identity_key
from aris.embed.index.base import VectorBackend, open_backend
from aris.errors import ArisError, ConfigError, InputError

if TYPE_CHECKING:
    from aris.config import ArisSettings
    from aris.embed.store import EmbeddingStore
    from aris.inputs.base import PreparedInput

logger = logging.getLogger(__name__)

EMBEDDABLE = ("cxr", "image", "ct", "mri", "wsi")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_key TEXT UNIQUE NOT NULL,
    input_digest TEXT NOT NULL,
    display TEXT NOT NULL,
    source TEXT,
    kind TEXT NOT NULL,
    read_kind TEXT NOT NULL,
    read_options TEXT NOT NULL,
    uids TEXT NOT NULL,
    n_parts INTEGER NOT NULL,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Hit:
    """One search result. ``source`` is a local path: show it to the local user, never over HTTP."""

    id: int
    score: float
    display: str
    kind: str
    uids: dict[str, str]
    n_parts: int
    source: str | None = None

    def public(self) -> dict[str, Any]:
        """What a server may return: no server path."""
        return {
            "id": self.id,
            "score": round(self.score, 6),
            "display": self.display,
            "kind": self.kind,
            "uids": self.uids,
            "parts": self.n_parts,
        }


@dataclass
class AddReport:
    added: list[tuple[int, str]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # already indexed: (id, display)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (display, error)
    embedded: int = 0  # inputs the model ran on (the rest came from the store)


def dicom_uids(path: Path) -> dict[str, str]:
    """Study/series (and, for one file, instance) UIDs of the first DICOM file of an input, if any."""
    import pydicom

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files[:50]:
        try:
            with f.open("rb") as fh:
                head = fh.read(132)
            if head[128:132] != b"DICM":
                continue
            ds = pydicom.dcmread(
                f,
                stop_before_pixels=True,
                specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
            )
        except Exception:  # an unreadable header leaves the UIDs unknown, it does not fail the item
            continue
        out = {
            k: str(ds.get(k))
            for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
            if ds.get(k) is not None
        }
        if path.is_dir():
            out.pop("SOPInstanceUID", None)  # a series has one per slice
        return out
    return {}


@dataclass(frozen=True)
class Found:
    """One input under the paths given: where it is, its display name, the reader options it needs."""

    path: Path
    display: str
    options: dict[str, str] = field(default_factory=dict)


def _series_in(folder: Path) -> dict[str, int | None]:
    """SeriesInstanceUID -> SeriesNumber of the CT/MR image files directly in ``folder``."""
    import pydicom

    out: dict[str, int | None] = {}
    for f in sorted(folder.iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        try:
            ds = pydicom.dcmread(
                f, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "SeriesNumber", "Modality"]
            )
        except Exception:  # not DICOM, or unreadable: the reader reports what matters
            continue
        if str(ds.get("Modality", "")).upper() in ("CT", "MR") and ds.get("SeriesInstanceUID"):
            number = ds.get("SeriesNumber")
            out.setdefault(str(ds.SeriesInstanceUID), int(number) if number not in (None, "") else None)
    return out


def _walk(p: Path, base: Path) -> Iterator[Found]:
    if p.name.startswith(".") or p.name == "__MACOSX" or p.name.upper() == "DICOMDIR":
        return
    display = p.relative_to(base).as_posix()
    if p.is_file():
        yield Found(p, display)
        return
    flat = not any(c.is_dir() and not c.name.startswith(".") for c in p.iterdir())
    if flat:
        from aris.inputs.detect import detect_kind

        try:
            kind = detect_kind(p)
        except ArisError:
            kind = None
        if kind == "wsi":
            yield Found(p, display)
            return
        if kind in ("ct", "mri"):
            series = _series_in(p)
            if len(series) <= 1:
                yield Found(p, display)
                return
            # Several series in one folder: each is an item of its own, never one picked silently.
            for i, (uid, number) in enumerate(
                sorted(series.items(), key=lambda kv: (kv[1] is None, kv[1] or 0, kv[0]))
            ):
                yield Found(
                    p, f"{display} (series {number if number is not None else i + 1})", {"series_uid": uid}
                )
            return
    for child in sorted(p.iterdir()):
        yield from _walk(child, base)


def discover(paths: Iterable[Path]) -> Iterator[Found]:
    """Each input under ``paths``: a file, a flat folder that is one DICOM series or slide pyramid (one
    item per series when it holds several), and everything under other folders; display names are
    relative to the folder given."""
    for root in paths:
        root = Path(root).expanduser()
        if not root.exists():
            raise InputError(root, "no such file or folder")
        yield from _walk(root, root.parent)


class ImageIndex:
    def __init__(
        self, folder: Path, *, backend: str, name: str = "default", qdrant_url: str | None = None
    ) -> None:
        self.folder = Path(folder)
        self.name = name
        self.folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.folder / "catalog.sqlite", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self.wanted_backend = backend
        self.qdrant_url = qdrant_url
        self._backend: VectorBackend | None = None

    @classmethod
    def open(cls, settings: ArisSettings, name: str = "default") -> ImageIndex:
        from aris.embed.task import PROBE_NAME

        if not PROBE_NAME.match(name):
            raise ConfigError(f"index name {name!r}: letters, digits, '.', '_' and '-' only")
        return cls(
            settings.home / "embed" / "index" / name,
            backend=settings.embed_index_backend,
            name=name,
            qdrant_url=settings.embed_qdrant_url,
        )

    # -- meta -------------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, **values: str) -> None:
        for k, v in values.items():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, v))

    @property
    def model_key(self) -> str | None:
        return self._meta("model_key")

    @property
    def identity(self) -> dict[str, Any] | None:
        raw = self._meta("identity")
        return None if raw is None else dict(json.loads(raw))

    @property
    def backend_name(self) -> str:
        return self._meta("backend") or self.wanted_backend

    def backend(self) -> VectorBackend:
        if self._backend is None:
            dim = int(self._meta("dim") or 0)
            if not dim:
                raise ConfigError(f"index {self.name!r} is empty; add images first (aris index add)")
            self._backend = open_backend(
                self.backend_name, self.folder, dim, index_name=self.name, url=self.qdrant_url
            )
        return self._backend

    def check_model(self, embedder: Embedder) -> None:
        """Refuse another embedding space than the index was built in, naming the way out."""
        have = self.model_key
        if have is None:
            return
        now = identity_key(embedder.identity())
        if now != have:
            built = (self.identity or {}).get("model")
            raise ConfigError(
                f"index {self.name!r} was built with {built!r} (key {have[:12]}); the embedder now is "
                f"{embedder.model_id!r} (key {now[:12]}). Run `aris index reindex` to re-embed it with "
                "this model, or choose the model it was built with (--embed-model)"
            )
        if self.backend_name != self.wanted_backend and self.count() > 0:
            raise ConfigError(
                f"index {self.name!r} is stored in {self.backend_name}, not {self.wanted_backend}; run "
                f"`aris index reindex --embed-index-backend {self.wanted_backend}` to move it"
            )

    def _claim(self, embedder: Embedder, dim: int) -> None:
        if self.model_key is None:
            identity = embedder.identity()
            self._set_meta(
                model_key=identity_key(identity),
                identity=json.dumps(identity, sort_keys=True, default=str),
                dim=str(dim),
                backend=self.wanted_backend,
            )

    # -- items ------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def items(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, display, kind, uids, n_parts, source, added FROM items ORDER BY id"
        ).fetchall()
        return [
            {
                "id": r[0],
                "display": r[1],
                "kind": r[2],
                "uids": json.loads(r[3]),
                "parts": r[4],
                "source": r[5],
                "added": r[6],
            }
            for r in rows
        ]

    @staticmethod
    def source_key(path: Path, kind: str, options: dict[str, str] | None = None) -> str:
        from aris.batch.manifest import path_digest

        opts = json.dumps(options or {}, sort_keys=True)
        return hashlib.sha256(f"aris-index-v1\0{path_digest(path)}\0{kind}\0{opts}".encode()).hexdigest()

    def _find(self, source_key: str) -> int | None:
        row = self._db.execute("SELECT id FROM items WHERE source_key = ?", (source_key,)).fetchone()
        return None if row is None else int(row[0])

    def add_prepared(
        self,
        prepared: PreparedInput,
        embedder: Embedder,
        store: EmbeddingStore | None,
        *,
        display: str,
        source_key: str,
        source: str | None,
        read_kind: str = "auto",
        read_options: dict[str, str] | None = None,
        uids: dict[str, str] | None = None,
    ) -> tuple[int, bool]:
        """Embed (or take from the store) and index one prepared input: (id, whether the model ran)."""
        from aris.embed.embedding import embed_prepared

        if prepared.kind not in EMBEDDABLE:
            raise InputError(source, f"a {prepared.kind} input has no images for MedSigLIP")
        with self._lock:
            self.check_model(embedder)
            emb = embed_prepared(embedder, prepared, store=store)
            self._claim(embedder, int(emb.pooled.shape[0]))
            if not uids:
                uid = prepared.provenance.details.get("series_uid")
                uids = {"SeriesInstanceUID": str(uid)} if uid and not str(uid).startswith("(") else {}
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO items (source_key, input_digest, display, source, kind, read_kind, read_options, "
                    "uids, n_parts, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        source_key,
                        emb.digest,
                        display,
                        source,
                        prepared.kind,
                        read_kind,
                        json.dumps(read_options or {}, sort_keys=True),
                        json.dumps(uids),
                        len(emb.labels),
                        time.time(),
                    ),
                )
                item_id = int(cur.lastrowid or 0)
                self.backend().add(np.array([item_id]), emb.pooled[None, :])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return item_id, not emb.cached

    def add(
        self,
        paths: Iterable[Path],
        embedder: Embedder,
        store: EmbeddingStore | None,
        *,
        kind: str = "auto",
        on_item: Callable[[int, int, str], None] | None = None,
    ) -> AddReport:
        """Index every input under ``paths``; already indexed ones are skipped, bad ones reported."""
        from aris.inputs import read

        self.check_model(embedder)
        found = list(discover(paths))
        report = AddReport()
        for i, item in enumerate(found):
            path, display = item.path, item.display
            try:
                key = self.source_key(path, kind, item.options)
                have = self._find(key)
                if have is not None:
                    report.skipped.append((have, display))
                else:
                    prepared = read(path, kind=kind, **item.options)
                    uids = dicom_uids(path)
                    if "series_uid" in item.options:
                        uids["SeriesInstanceUID"] = item.options["series_uid"]
                        uids.pop("SOPInstanceUID", None)
                    item_id, ran = self.add_prepared(
                        prepared,
                        embedder,
                        store,
                        display=display,
                        source_key=key,
                        source=str(path.resolve()),
                        read_kind=kind,
                        read_options=item.options,
                        uids=uids,
                    )
                    report.added.append((item_id, display))
                    report.embedded += int(ran)
            except ConfigError:
                raise
            except ArisError as e:
                report.failed.append((display, str(e)))
            if on_item is not None:
                on_item(i + 1, len(found), display)
        logger.info(
            "index %s: %d added, %d already there, %d failed",
            self.name,
            len(report.added),
            len(report.skipped),
            len(report.failed),
        )
        return report

    def delete(self, ids: Iterable[int] = (), paths: Iterable[Path] = ()) -> int:
        """Remove items by id or by source path; returns how many went."""
        wanted = {int(i) for i in ids}
        for p in paths:
            row = self._db.execute(
                "SELECT id FROM items WHERE source = ?", (str(Path(p).expanduser().resolve()),)
            ).fetchone()
            if row is None:
                raise InputError(p, "not in the index")
            wanted.add(int(row[0]))
        present = [
            i for i in sorted(wanted) if self._db.execute("SELECT 1 FROM items WHERE id = ?", (i,)).fetchone()
        ]
        missing = sorted(wanted - set(present))
        if missing:
            raise ConfigError(f"no item(s) {', '.join(map(str, missing))} in index {self.name!r}")
        if not present:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in present])
                self.backend().delete(present)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(present)

    # -- search -----------------------------------------------------------------------------------
    def search_vector(self, vector: np.ndarray, k: int = 10) -> list[Hit]:
        if k < 1:
            raise ConfigError("k must be at least 1")
        if self.count() == 0:
            return []
        hits = self.backend().search(vector, k)
        out = []
        for item_id, score in hits:
            row = self._db.execute(
                "SELECT display, kind, uids, n_parts, source FROM items WHERE id = ?", (item_id,)
            ).fetchone()
            if row is None:  # deleted in the catalog; never return it
                continue
            out.append(Hit(item_id, score, row[0], row[1], json.loads(row[2]), int(row[3]), row[4]))
        return out

    def search_text(self, text: str, embedder: Embedder, k: int = 10) -> list[Hit]:
        self.check_model(embedder)
        if not text.strip():
            raise ConfigError("the search text is empty")
        return self.search_vector(embedder.embed_texts([text])[0], k)

    def search_image(
        self, prepared: PreparedInput, embedder: Embedder, store: EmbeddingStore | None, k: int = 10
    ) -> list[Hit]:
        from aris.embed.embedding import embed_prepared

        self.check_model(embedder)
        return self.search_vector(embed_prepared(embedder, prepared, store=store).pooled, k)

    # -- re-index ---------------------------------------------------------------------------------
    def reindex(
        self,
        embedder: Embedder,
        store: EmbeddingStore | None,
        on_item: Callable[[int, int, str], None] | None = None,
    ) -> AddReport:
        """Re-embed every item from its source with ``embedder`` into the configured backend.

        Items whose source can no longer be read are dropped and reported: an index must not keep
        vectors from another model.
        """
        from aris.embed.embedding import embed_prepared
        from aris.inputs import read

        report = AddReport()
        rows = self._db.execute(
            "SELECT id, display, source, read_kind, read_options FROM items ORDER BY id"
        ).fetchall()
        vectors: list[tuple[int, np.ndarray, str, int]] = []
        dropped: list[int] = []
        for i, (item_id, display, source, read_kind, read_options) in enumerate(rows):
            try:
                if not source:
                    raise InputError(None, "no source path recorded")
                prepared = read(Path(source), kind=read_kind, **json.loads(read_options))
                emb = embed_prepared(embedder, prepared, store=store)
                vectors.append((int(item_id), emb.pooled, emb.digest, len(emb.labels)))
                report.added.append((int(item_id), display))
                report.embedded += int(not emb.cached)
            except ConfigError:
                raise
            except ArisError as e:
                dropped.append(int(item_id))
                report.failed.append((display, str(e)))
            if on_item is not None:
                on_item(i + 1, len(rows), display)
        identity = embedder.identity()
        dim = int(vectors[0][1].shape[0]) if vectors else int(self._meta("dim") or 0)
        with self._lock:
            if self._backend is not None and self._backend.name != self.wanted_backend:
                self._backend.close()
                self._backend = None
            self._set_meta(backend=self.wanted_backend)
            if dim:
                self._set_meta(dim=str(dim))
            backend = self.backend() if dim else None
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in dropped])
                for item_id, _, digest, n in vectors:
                    self._db.execute(
                        "UPDATE items SET input_digest = ?, n_parts = ? WHERE id = ?", (digest, n, item_id)
                    )
                self._set_meta(
                    model_key=identity_key(identity),
                    identity=json.dumps(identity, sort_keys=True, default=str),
                )
                if backend is not None:
                    backend.reset(dim)
                    if vectors:
                        backend.add(np.array([v[0] for v in vectors]), np.stack([v[1] for v in vectors]))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return report

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        self._db.close()


__all__ = ["AddReport", "Found", "Hit", "ImageIndex", "dicom_uids", "discover"]
