"""Prepared inputs -> embeddings: every image part embedded, then pooled into one vector per input.

The readers (:mod:`aris.inputs`) turn a study into what MedGemma sees: a CT or MRI into up to 85 windowed
slices, a slide into up to 126 tissue tiles, a chest X-ray into one image. MedSigLIP embeds each of
those images; the input's embedding is the mean of the L2-normalised parts, normalised again, and the
parts are kept (per-slice or per-tile search and scores).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aris.embed import Embedder, OnBatch, identity_key
from aris.embed.preprocess import l2_normalise
from aris.embed.store import EmbeddingStore
from aris.errors import InputError
from aris.inputs.base import PreparedInput

logger = logging.getLogger(__name__)


@dataclass
class InputEmbedding:
    """One input's embeddings: ``pooled`` (d,), ``parts`` (n, d) in the order of ``labels``."""

    pooled: np.ndarray
    parts: np.ndarray
    labels: list[str]
    kind: str
    digest: str
    cached: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)


def pixel_digest(prepared: PreparedInput) -> str:
    """sha256 of exactly what the model sees: each image's mode, size and pixels, in order."""
    h = hashlib.sha256(b"aris-pixels-v1\0")
    for pixels in prepared.arrays:  # RGB: the digest an RGB Pillow image of these pixels had
        h.update(f"RGB:{pixels.shape[1]}x{pixels.shape[0]}\0".encode())
        h.update(pixels.data)
    return h.hexdigest()


def pool(parts: np.ndarray) -> np.ndarray:
    """The input's vector: the mean of its L2-normalised parts, normalised."""
    out: np.ndarray = l2_normalise(parts.mean(axis=0, keepdims=True))[0]
    return out


def _provenance(prepared: PreparedInput) -> dict[str, Any]:
    """What the store keeps about a reading: kind, reader details and warnings (no source paths)."""
    details = {k: v for k, v in prepared.provenance.details.items() if k not in ("files",)}
    return {"kind": prepared.kind, "details": details, "warnings": list(prepared.provenance.warnings)}


def embed_prepared(
    embedder: Embedder,
    prepared: PreparedInput,
    *,
    store: EmbeddingStore | None = None,
    on_batch: OnBatch | None = None,
) -> InputEmbedding:
    """Embed one prepared input, or take its embeddings from ``store`` when this model saw these pixels."""
    n_images = len(prepared.arrays)
    if not n_images:
        src = prepared.provenance.sources[0] if prepared.provenance.sources else None
        raise InputError(src, f"a {prepared.kind} input has no images to embed")
    digest = pixel_digest(prepared)
    identity = embedder.identity()
    key = identity_key(identity)
    if store is not None:
        hit = store.get(key, digest)
        if hit is not None:
            logger.info("embedding %s: from the store (%d parts)", digest[:12], len(hit.labels))
            if on_batch is not None:
                on_batch(n_images, n_images)
            return InputEmbedding(hit.pooled, hit.parts, hit.labels, hit.kind, digest, True, hit.provenance)
    parts = embedder.embed_images(prepared.images, on_batch=on_batch)
    pooled = pool(parts)
    labels = prepared.labels
    prov = _provenance(prepared)
    if store is not None:
        store.put(
            key,
            identity,
            digest,
            kind=prepared.kind,
            pooled=pooled,
            parts=parts,
            labels=labels,
            provenance=prov,
        )
    logger.info("embedding %s: %d parts embedded", digest[:12], n_images)
    return InputEmbedding(pooled, parts, labels, prepared.kind, digest, False, prov)
