"""``aris batch`` as a user runs it: a real subprocess, killed with SIGKILL mid-batch and run again."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from aris.store import Store

from .conftest import add_corrupt_files, make_images


def aris(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aris.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait_for(pred, timeout: float, what: str, proc: subprocess.Popen[str] | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the batch exited ({proc.returncode}) before {what}:\n{out}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_mid_batch_then_the_same_command_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "worklist"
    make_images(folder, 30)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cmd = [
        "batch",
        "run",
        str(folder),
        "--task",
        "cxr-report",
        "--engine",
        "fake",
        "--pace",
        "0.15",
        "--db",
        url,
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "aris.cli", *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(lambda: (tmp_path / "store.db").exists(), 60, "the store to exist", proc)
        store = Store.open(url)

        def some_done() -> dict[str, int] | None:
            jobs = store.jobs()
            if not jobs:
                return None
            c = store.counts(jobs[0].id)
            return c if c["done"] >= 8 else None

        _wait_for(some_done, 90, "8 items done", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (job,) = store.jobs()
    before = store.counts(job.id)
    assert 8 <= before["done"] < 30, before
    assert before["running"] >= 1, before  # the dead process held items
    done_before = {it.key for it in store.items(job.id, "done")}
    held = {it.key for it in store.items(job.id, "running")}

    r = aris(*cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resuming {job.id}" in r.stderr
    assert store.jobs()[0].id == job.id  # the same job, not a new one
    after = store.counts(job.id)
    assert after == {"pending": 0, "running": 0, "done": 30, "failed": 0, "total": 30}

    # Every item done exactly once: one result per key, one "item.done" in the audit per key.
    items = store.items(job.id)
    keys = [it.key for it in items]
    assert len(set(keys)) == 30
    with store.engine.connect() as conn:
        per_key = dict(conn.exec_driver_sql("SELECT key, count(*) FROM results GROUP BY key").all())
    assert per_key == dict.fromkeys(keys, 1)
    done_audit = [a.item_key for a in store.audit_trail(job.id, "item.done")]
    assert sorted(done_audit) == sorted(keys)
    # Items finished before the kill were not run again; those the dead process held were reset.
    by_key = {it.key: it for it in items}
    assert all(by_key[k].attempts == 1 for k in done_before)
    assert all(by_key[k].attempts == 2 for k in held)
    resume = store.audit_trail(job.id, "job.resume")
    assert len(resume) == 1
    assert resume[0].detail == f"{len(held)} running items reset"
    store.close()


def test_corrupt_files_then_status_retry_and_export(tmp_path: Path, dx_dicom: Path) -> None:
    folder = tmp_path / "worklist"
    make_images(folder, 3)
    shutil.copy(dx_dicom, folder / "dx.dcm")
    expected = add_corrupt_files(folder, dx_dicom)
    out = tmp_path / "results.csv"

    r = aris("batch", "run", str(folder), "--task", "cxr-report", "--engine", "fake", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "7: 4 done, 3 failed, 0 left" in r.stdout
    for name in expected:
        assert f"{folder / name}: " in r.stdout.replace("\n", "")
    rows = {Path(row["input"]).name: row for row in csv.DictReader(out.open())}
    assert len(rows) == 7
    for name, problem in expected.items():
        assert rows[name]["status"] == "failed"
        assert problem in rows[name]["error"]
        assert rows[name]["text"] == ""
    good = [row for row in rows.values() if row["status"] == "done"]
    assert len(good) == 4
    assert {row["text"] for row in good} == {"ok"}
    assert {row["model"] for row in good} == {"fake"}

    with Store.open() as store:  # the default store under ARIS_HOME, which the CLI used
        (job,) = store.jobs()
    st = aris("batch", "status", job.id)
    assert st.returncode == 0, st.stderr
    assert f"batch {job.id}: done" in st.stdout
    assert "items 7: 4 done, 3 failed, 0 pending, 0 running" in st.stdout
    assert "empty file" in st.stdout
    listing = aris("batch", "status")
    assert job.id in listing.stdout

    rt = aris("batch", "retry", job.id, "--failed")
    assert rt.returncode == 0, rt.stdout + rt.stderr
    assert "3 failed items of batch" in rt.stderr
    assert "0 done, 3 failed" in rt.stdout  # still corrupt

    jl = tmp_path / "results.jsonl"
    ex = aris("batch", "export", job.id[:8], "--out", str(jl))
    assert ex.returncode == 0, ex.stderr
    records = [json.loads(line) for line in jl.read_text().splitlines()]
    assert [r["status"] for r in records].count("done") == 4
    failed = [r for r in records if r["status"] == "failed"]
    assert {r["attempts"] for r in failed} == {2}
    assert all(r["result"] is None for r in failed)
    with Store.open() as store:
        assert [a.action for a in store.audit_trail(job.id)][-1] == "job.export"


def test_unknown_worklist_or_task_is_a_clear_error(tmp_path: Path) -> None:
    r = aris("batch", "run", "nosuchbatch", "--task", "cxr-report", "--engine", "fake")
    assert r.returncode == 2
    assert "no such worklist" in r.stderr
    make_images(tmp_path / "w", 1)
    r = aris("batch", "run", str(tmp_path / "w"), "--task", "no-such-task", "--engine", "fake")
    assert r.returncode == 2
    assert "Unknown task 'no-such-task'" in r.stderr
