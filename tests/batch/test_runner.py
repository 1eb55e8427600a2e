"""The batch driver in-process, above the engine (FakeEngine replays "ok"; the readers are real)."""

from __future__ import annotations

import shutil
from pathlib import Path

from aris.batch import BatchOptions, run_batch, run_job
from aris.config import ArisSettings
from aris.store import Store

from .conftest import add_corrupt_files, make_images

FAKE = ArisSettings(engine="fake")


def _store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'batch.db'}")


def test_a_folder_runs_to_done_and_a_rerun_does_nothing_again(tmp_path: Path, images: Path) -> None:
    with _store(tmp_path) as store:
        first = run_batch(images, "cxr-report", FAKE, store=store)
        assert first.counts == {"pending": 0, "running": 0, "done": 6, "failed": 0, "total": 6}
        assert first.done_now == 6
        assert first.finished
        assert first.workers[0].served == 6
        rows = store.export(first.job_id)
        assert [Path(r["input"]).name for r in rows] == [f"img{i:03d}.png" for i in range(6)]
        assert all(r["result"]["model"] == "fake" and r["result"]["text"] == "ok" for r in rows)
        # The reader's time is part of the record.
        assert all(r["prepare_s"] > 0 and r["result"]["timings"]["prepare_s"] >= r["prepare_s"] for r in rows)

        again = run_batch(images, "cxr-report", FAKE, store=store)
        assert again.job_id == first.job_id
        assert again.resumed
        assert (again.done_now, again.failed_now) == (0, 0)
        assert len(store.audit_trail(first.job_id, "item.done")) == 6

        # A changed file is a new item, so a new job; the five unchanged ones reuse their results.
        make_images(images, 1, start=40)[0].replace(images / "img000.png")
        third = run_batch(images, "cxr-report", FAKE, store=store)
        assert third.job_id != first.job_id
        assert (third.done_now, third.reused_now) == (1, 5)


def test_corrupt_items_fail_with_their_error_and_the_batch_goes_on(
    tmp_path: Path, images: Path, dx_dicom: Path
) -> None:
    shutil.copy(dx_dicom, images / "dx.dcm")
    expected = add_corrupt_files(images, dx_dicom)
    with _store(tmp_path) as store:
        s = run_batch(images, "cxr-report", FAKE, store=store)
        assert s.counts["done"] == 7
        assert s.counts["failed"] == 3
        assert s.finished
        failed = {Path(it.input_ref).name: it.error for it in store.items(s.job_id, "failed")}
        assert set(failed) == set(expected)
        for name, problem in expected.items():
            assert failed[name].startswith(str(images / name) + ": ")  # the InputError names the file
            assert problem in failed[name]
        trail = store.audit_trail(s.job_id, "item.failed")
        assert sorted(a.detail for a in trail) == [
            "CorruptFileError",
            "CorruptFileError",
            "UnsupportedFormatError",
        ]
        assert all(a.detail and str(images) not in a.detail for a in trail)  # no paths in the audit

        # retry: the failed items run again (and fail again, they are still corrupt)
        assert store.retry_failed(s.job_id) == 3
        r = run_job(s.job_id, store=store)
        assert (r.done_now, r.failed_now) == (0, 3)
        assert {it.attempts for it in store.items(s.job_id, "failed")} == {2}
        assert {it.attempts for it in store.items(s.job_id, "done")} == {1}


def test_items_with_the_same_content_are_generated_once(tmp_path: Path, images: Path) -> None:
    shutil.copy(images / "img001.png", images / "zz-copy.png")
    with _store(tmp_path) as store:
        s = run_batch(images, "cxr-report", FAKE, store=store)
        assert s.counts["done"] == 7
        assert s.done_now + s.reused_now == 7
        assert s.workers[0].served == 6  # the copy did not reach the engine
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM results").scalar() == 6
        rows = {Path(r["input"]).name: r for r in store.export(s.job_id)}
        assert rows["zz-copy.png"]["key"] == rows["img001.png"]["key"]
        assert rows["zz-copy.png"]["result"] == rows["img001.png"]["result"]


def overlapped(events: list[tuple[str, int]]) -> int:
    """Items whose reading finished while another item was generating (from the driver's event order)."""
    generating: set[int] = set()
    n = 0
    for name, item in events:
        if name == "generate":
            generating.add(item)
        elif name == "generated":
            generating.discard(item)
        elif name == "prepared" and generating - {item}:
            n += 1
    return n


def test_preparation_overlaps_generation(tmp_path: Path, samples) -> None:  # type: ignore[no-untyped-def]
    """Reading the next items happens while the engine generates: proved from the order of the driver's
    events, not from timings (a loaded machine makes any time bound flaky)."""
    folder = tmp_path / "big"
    folder.mkdir()
    import pydicom

    ds = pydicom.dcmread(samples("dicom/cxr/highdicom_dx_image.dcm"))
    for i in range(6):  # a different comment in each copy keeps their content keys apart
        ds.ImageComments = f"copy {i}"
        ds.save_as(folder / f"cxr{i}.dcm")
    with _store(tmp_path) as store:
        s = run_batch(folder, "cxr-report", FAKE, store=store, options=BatchOptions(pace_s=0.3))
        assert s.counts["done"] == 6, store.items(s.job_id, "failed")
        names = [e for e, _ in s.events]
        assert names.count("prepared") == 6
        assert names.count("generated") == 6
        # With generation paced, later items are read while earlier ones generate.
        assert overlapped(s.events) >= 3, s.events
        # Each item is prepared before it generates, and generates once.
        for item in {i for _, i in s.events}:
            mine = [e for e, i in s.events if i == item]
            assert mine == ["prepare", "prepared", "generate", "generated"], (item, mine)
        assert s.idle_share + s.busy_share <= 1.0 + 1e-6


def test_a_previous_batch_id_is_a_worklist(tmp_path: Path, images: Path) -> None:
    with _store(tmp_path) as store:
        s = run_batch(images, "cxr-report", FAKE, store=store)
        other = run_batch(s.job_id[:8], "vqa", FAKE, store=store, question="Is this a chest film?")
        assert other.job_id != s.job_id
        assert other.counts["done"] == 6
        job = store.get_job(other.job_id)
        assert job.task == "vqa"
        assert job.source == f"batch:{s.job_id}"
        assert {it.question for it in store.items(other.job_id)} == {"Is this a chest film?"}


def test_a_file_fixed_after_it_failed_is_keyed_by_its_new_bytes_on_retry(tmp_path: Path) -> None:
    # Kept under the key of the bytes it failed with, the fixed file's answer was then served to the
    # next batch meeting those bytes: an empty file reported as read.
    import numpy as np
    from PIL import Image

    first = tmp_path / "w1"
    first.mkdir()
    (first / "scan.png").write_bytes(b"")
    with _store(tmp_path) as store:
        s = run_batch(first, "cxr-report", FAKE, store=store)
        assert s.counts["failed"] == 1
        (failed,) = store.items(s.job_id)
        Image.fromarray(np.full((64, 64), 200, np.uint8)).save(first / "scan.png")
        store.retry_failed(s.job_id)
        again = run_job(s.job_id, store=store)
        assert again.counts["done"] == 1
        (fixed,) = store.items(s.job_id)
        assert fixed.input_digest != failed.input_digest
        assert fixed.key != failed.key
        second = tmp_path / "w2"
        second.mkdir()
        (second / "broken.png").write_bytes(b"")
        other = run_batch(second, "cxr-report", FAKE, store=store)
        assert other.counts["failed"] == 1
        assert other.reused_now == 0
