"""Image search per backend: the query's own image comes first, deletes hold, re-index on a model change."""

from __future__ import annotations

from pathlib import Path

import pytest

from aris.embed.index import ImageIndex
from aris.embed.store import EmbeddingStore
from aris.errors import ConfigError
from aris.inputs import read


@pytest.mark.parametrize("backend", ["faiss", "sqlite-vec", "qdrant"])
def test_search_finds_the_query_first_and_respects_deletes(
    backend: str,
    embedder,
    class_folder: Path,
    tmp_path: Path,
    samples,  # type: ignore[no-untyped-def]
) -> None:
    store = EmbeddingStore(tmp_path / "e.db")
    ix = ImageIndex(tmp_path / "ix", backend=backend)
    series = samples("dicom/ct_series/head_ct2_4slices")
    report = ix.add([class_folder, series], embedder, store)
    assert len(report.added) == 16
    assert not report.failed
    items = {it["display"]: it for it in ix.items()}
    assert items["head_ct2_4slices"]["kind"] == "ct"  # a series folder is one item, its slices pooled
    assert items["head_ct2_4slices"]["parts"] == 4
    assert set(items["head_ct2_4slices"]["uids"]) == {"StudyInstanceUID", "SeriesInstanceUID"}

    files = sorted(class_folder.rglob("*.png"))
    for f in files[::3]:  # one or two views of each class
        hits = ix.search_image(read(f), embedder, store, k=3)
        assert hits[0].display == f"dataset/{f.relative_to(class_folder).as_posix()}"
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert hits[0].score >= hits[1].score >= hits[2].score

    first = ix.search_image(read(files[0]), embedder, store, k=1)[0]
    assert ix.delete([first.id]) == 1
    again = ix.search_image(read(files[0]), embedder, store, k=16)
    assert first.id not in {h.id for h in again}
    assert len(again) == 15
    assert ix.count() == 15

    text_hits = ix.search_text("pleural effusion", embedder, k=5)
    assert len(text_hits) == 5
    assert {"id", "score", "display", "kind", "uids", "parts"} == set(text_hits[0].public())

    readd = ix.add([class_folder], embedder, store)  # one back (deleted), the rest already there
    assert [d for _, d in readd.added] == [first.display]
    assert len(readd.skipped) == 14
    assert readd.embedded == 0  # its embedding came from the store
    ix.close()
    store.close()


def test_a_model_change_needs_a_reindex(
    embedder, other_siglip: Path, class_folder: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from aris.embed.local import TransformersEmbedder

    store = EmbeddingStore(tmp_path / "e.db")
    ix = ImageIndex(tmp_path / "ix", backend="faiss")
    ix.add([class_folder / "pathology", class_folder / "chest_xray"], embedder, store)
    other = TransformersEmbedder(str(other_siglip), device="cpu")
    try:
        with pytest.raises(ConfigError, match="aris index reindex"):
            ix.search_text("adipose", other)
        with pytest.raises(ConfigError, match="aris index reindex"):
            ix.add([class_folder / "ct_slice"], other, store)
        ix.wanted_backend = "sqlite-vec"  # and move it to another backend on the way
        report = ix.reindex(other, store)
        assert len(report.added) == 10
        assert report.embedded == 10
        assert ix.backend_name == "sqlite-vec"
        f = sorted((class_folder / "pathology").glob("*.png"))[2]
        assert ix.search_image(read(f), other, store, k=1)[0].display.endswith("pathology/02.png")
        with pytest.raises(ConfigError, match="aris index reindex"):
            ix.search_text("adipose", embedder)
    finally:
        other.close()
        ix.close()
        store.close()


def test_faiss_vectors_survive_reopen_and_other_writers(tmp_path: Path) -> None:
    """Vectors are durable in SQLite; a second handle (another process) sees adds and deletes; the
    snapshot written on close is used only while it matches what is stored."""
    import numpy as np

    from aris.embed.index.faiss_backend import FaissBackend

    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a = FaissBackend(tmp_path / "v.faiss", 8)
    b = FaissBackend(tmp_path / "v.faiss", 8)
    a.add(np.arange(1, 11), x[:10])
    assert b.search(x[3], 1)[0][0] == 4  # b reloads: the stored generation moved
    b.add(np.arange(11, 21), x[10:])
    b.delete([4])
    assert a.count() == 19
    assert a.search(x[3], 1)[0][0] != 4
    a.close()
    b.close()
    assert (tmp_path / "v.gen").exists()
    c = FaissBackend(tmp_path / "v.faiss", 8)
    assert c.count() == 19
    assert c.search(x[15], 1)[0] == (16, pytest.approx(1.0, abs=1e-5))
    c.add(np.array([99]), -x[:1])  # the snapshot is now stale...
    (tmp_path / "v.gen").write_text("0")  # ...and a crash left an older tag: rebuilt from SQLite
    d = FaissBackend(tmp_path / "v.faiss", 8)
    assert d.count() == 20
    d.close()
    c.close()


def test_a_flat_folder_of_two_series_gives_one_item_per_series(embedder, samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("cardiac_ct5n_5slices", "head_ct2_4slices"):
        for f in samples(f"dicom/ct_series/{name}").iterdir():
            shutil.copy(f, mixed / f"{name}-{f.name}")
    ix = ImageIndex(tmp_path / "ix", backend="faiss")
    report = ix.add([mixed], embedder, None)
    assert not report.failed
    items = ix.items()
    assert sorted(it["parts"] for it in items) == [4, 5]  # neither series dropped for the other
    assert all(it["display"].startswith("mixed (series ") for it in items)
    assert len({it["uids"]["SeriesInstanceUID"] for it in items}) == 2
    again = ix.add([mixed], embedder, None)
    assert len(again.skipped) == 2
    ix.close()
