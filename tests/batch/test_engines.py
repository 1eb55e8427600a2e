"""Batches through real engines: llama.cpp in-process, and two llama-cpp-python servers as endpoints.

The model is the real Gemma 3 270M GGUF (a base model that mostly echoes: these tests check the
batch machinery and where items went, not answers).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from aris.store import Store
from tests.servers import llama_server

QUESTIONS = [
    "What organ makes insulin?",
    "What is a normal adult resting heart rate?",
    "Name one symptom of anemia.",
    "Which vitamin deficiency causes scurvy?",
    "What does HbA1c measure?",
    "Which electrolyte is low in hyponatremia?",
    "What is the main artery leaving the heart?",
    "Name one cause of a pleural effusion.",
    "What does a chest X-ray show in pneumothorax?",
    "What is the unit of serum creatinine in the US?",
    "Which lobe is most often affected by aspiration?",
    "What is the normal range of serum potassium?",
]


def _worklist(tmp_path: Path, n: int) -> Path:
    lst = tmp_path / "questions.csv"
    lst.write_text("question\n" + "\n".join(QUESTIONS[:n]) + "\n")
    return lst


def _env() -> dict[str, str]:
    return {**os.environ, "ARIS_N_THREADS": "1"}


def _server_pid(base_url: str) -> int:
    """The llama_cpp.server child of this process that listens on ``base_url``'s port."""
    port = base_url.rsplit(":", 1)[1].split("/")[0]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"llama_cpp.server" in args and port.encode() in args:
            return int(proc.name)
    raise AssertionError(f"no llama_cpp.server child on port {port}")


def test_e2e_batch_through_llamacpp(tmp_path: Path, gguf_270m: Path) -> None:
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "aris.cli", "batch", "run", str(_worklist(tmp_path, 2)), "--task", "text-qa",
           "--engine", "llamacpp", "--model", str(gguf_270m), "--n-ctx", "1024", "--max-new-tokens", "6",
           "--out", str(out)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env(), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2: 2 done, 0 failed, 0 left" in r.stdout
    with Store.open() as store:
        (job,) = store.jobs()
        assert job.engine == "llamacpp"
        assert job.model == gguf_270m.name  # a name, not a path
        assert job.params["identity"]["weights"] == hashlib.sha256(gguf_270m.read_bytes()).hexdigest()
        rows = store.export(job.id)
    assert [row["question"] for row in rows] == QUESTIONS[:2]
    for row in rows:
        res = row["result"]
        assert res["engine"] == "llamacpp"
        assert res["raw"]  # the model produced text
        assert res["usage"]["completion_tokens"] > 0
        assert row["worker"] == "llamacpp"
    # The same command again finds everything done.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env(), check=False)
    assert again.returncode == 0, again.stderr
    assert "0 done, 0 failed" in again.stdout


def test_two_endpoints_share_items_and_one_stopping_mid_run_loses_nothing(
    tmp_path: Path, gguf_270m: Path
) -> None:
    n = len(QUESTIONS)
    with llama_server(gguf_270m, n_threads=1, n_ctx=1024) as url_a:
        server_b = llama_server(gguf_270m, n_threads=1, n_ctx=1024)
        url_b = server_b.__enter__()
        b_running = True
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "aris.cli", "batch", "run", str(_worklist(tmp_path, n)), "--task", "text-qa",
                 "--endpoint", url_a, "--endpoint", url_b, "--per-endpoint", "2", "--max-new-tokens", "4"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
            )  # fmt: skip
            store = None
            deadline = time.monotonic() + 400

            def done_by() -> dict[str | None, int]:
                assert store is not None
                jobs = store.jobs()
                done = store.items(jobs[0].id, "done") if jobs else []
                return {w: sum(1 for it in done if it.worker == w) for w in (url_a, url_b)}

            served: dict[str | None, int] = {}
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
                if store is None:
                    try:
                        store = Store.open()
                    except Exception:  # the batch is still creating the store
                        continue
                served = done_by()
                if served[url_b] >= 1 and served[url_a] >= 1:
                    break
            assert proc.poll() is None, "the batch ended before both endpoints had served"
            assert served.get(url_b, 0) >= 1, served
            # B freezes first (SIGSTOP), so that it surely holds requests when it dies: with at least
            # three items not done, B's own in-flight ones stay, or the least-loaded dispatch gives it
            # one of the rest, which it never answers. Once A has done all but two, B holds its share.
            left = n - sum(served.values())
            assert left >= 3, f"the test looked too late: {served}, {left} items left"
            b_pid = _server_pid(url_b)
            os.kill(b_pid, signal.SIGSTOP)
            while time.monotonic() < deadline and proc.poll() is None:
                if sum(done_by().values()) >= n - 2:
                    break
                time.sleep(0.2)
            assert proc.poll() is None, "the batch ended while B was frozen: B held no request"
            # B dies mid-request (SIGKILL: the requests it holds break off), then its context cleans up.
            os.kill(b_pid, signal.SIGKILL)
            server_b.__exit__(None, None, None)
            b_running = False
            stdout, stderr = proc.communicate(timeout=600)
        finally:
            if b_running:
                server_b.__exit__(None, None, None)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, stdout + stderr
    assert store is not None
    (job,) = store.jobs()
    assert store.counts(job.id) == {"pending": 0, "running": 0, "done": n, "failed": 0, "total": n}
    items = store.items(job.id)
    by_worker = {w: sum(1 for it in items if it.worker == w) for w in (url_a, url_b)}
    assert by_worker[url_a] + by_worker[url_b] == n
    assert by_worker[url_b] >= 1  # B served some before it stopped ...
    assert by_worker[url_a] >= n - by_worker[url_b]  # ... and A finished the rest
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM results").scalar() == n
    assert len(store.audit_trail(job.id, "item.done")) == n
    # B's failures after it died were retried on A, not charged to items.
    row_b = next(line for line in stdout.splitlines() if url_b in line)
    errors_b = int(re.search(r"(\d+) errors", row_b).group(1))  # type: ignore[union-attr]
    assert errors_b >= 1, stdout
    assert {it.attempts for it in items} == {1}
    store.close()
