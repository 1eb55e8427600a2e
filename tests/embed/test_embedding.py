"""Studies embed through the same readers as MedGemma: a CT series its slices, a slide its tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aris.embed.embedding import embed_prepared, pool
from aris.embed.store import EmbeddingStore
from aris.inputs import read


class Counting:
    """The real embedder, counting the images it is asked to embed."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.images = inner, 0
        self.kind, self.model_id = inner.kind, inner.model_id

    def embed_images(self, images, *, on_batch=None):  # type: ignore[no-untyped-def]
        self.images += len(images)
        return self.inner.embed_images(images, on_batch=on_batch)

    def identity(self):  # type: ignore[no-untyped-def]
        return self.inner.identity()


def test_ct_series_embeds_each_slice_and_pools(embedder, samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prepared = read(samples("dicom/ct_series/cardiac_ct5n_5slices"))
    assert prepared.kind == "ct"
    emb = embed_prepared(embedder, prepared)
    assert emb.parts.shape == (5, 32)
    assert emb.labels == ["SLICE 1", "SLICE 2", "SLICE 3", "SLICE 4", "SLICE 5"]
    # each slice is embedded as the reader windowed it, alone
    np.testing.assert_allclose(emb.parts[2], embedder.embed_images([prepared.images[2]])[0], atol=1e-6)
    mean = emb.parts.mean(axis=0)
    np.testing.assert_allclose(emb.pooled, mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_allclose(pool(emb.parts), emb.pooled, atol=1e-7)


def test_slide_embeds_its_tiles(embedder, samples) -> None:  # type: ignore[no-untyped-def]
    prepared = read(samples("wsi/cmu_small_region.svs"), magnification="20X", max_tiles=4)
    assert prepared.kind == "wsi"
    emb = embed_prepared(embedder, prepared)
    assert emb.parts.shape[0] == len(prepared.images) >= 2
    assert emb.kind == "wsi"


def test_the_same_pixels_are_never_embedded_twice(embedder, samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = EmbeddingStore(tmp_path / "e.db")
    counting = Counting(embedder)
    first = embed_prepared(counting, read(samples("dicom/ct_series/head_ct2_4slices")), store=store)
    again = embed_prepared(counting, read(samples("dicom/ct_series/head_ct2_4slices")), store=store)
    assert counting.images == 4  # the second reading came from the store
    assert not first.cached
    assert again.cached
    np.testing.assert_array_equal(first.parts, again.parts)
    assert again.provenance["kind"] == "ct"
    assert "files" not in again.provenance["details"]  # no file names kept
    other = embed_prepared(counting, read(samples("dicom/ct_series/cardiac_ct5n_5slices")), store=store)
    assert counting.images == 9
    assert not other.cached
    assert store.count() == 2
    store.close()
