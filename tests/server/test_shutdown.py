"""Graceful shutdown of a real ``aris serve`` process (llama.cpp, the 270M GGUF) caught mid-generation:
SIGTERM stops accepting, gives open work its bound, cancels the rest (a queued job is recorded as
cancelled in the store), removes every upload, closes the engine, and the process exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from .conftest import free_port


def test_sigterm_mid_generation_ends_within_the_bound(gguf_270m: Path, tmp_path: Path) -> None:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    env = {**os.environ, "ARIS_HOME": str(home), "TMPDIR": str(tmp)}
    args = [sys.executable, "-m", "aris", "serve", "--port", str(port), "--engine", "llamacpp"]
    args += ["--model", str(gguf_270m), "--n-ctx", "4096", "--shutdown-timeout", "2"]
    log = tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            up = httpx.post(f"{url}/v1/uploads", files=[("files", ("note.txt", b"x" * 1000, "text/plain"))])
            assert up.status_code == 201
            assert list(tmp.glob("aris-uploads-*/*/*"))  # the upload is on disk

            chunks: list[str] = []
            started = threading.Event()

            def stream() -> None:
                # A grammar that cannot end before a thousand numbers: the model cannot stop early.
                long = {"type": "array", "items": {"type": "integer"}, "minItems": 1000}
                body = {
                    "messages": [{"role": "user", "content": "List numbers."}],
                    "max_tokens": 3500,
                    "stream": True,
                    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": long}},
                }
                try:
                    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as r:
                        for line in r.iter_lines():
                            if line.startswith("data: "):
                                chunks.append(line)
                                if len(chunks) >= 3:
                                    started.set()
                except httpx.HTTPError:
                    pass
                started.set()

            reader = threading.Thread(target=stream)
            reader.start()
            assert started.wait(120)
            job = httpx.post(
                f"{url}/v1/jobs",
                json={
                    "task": "text-qa",
                    "uploads": [],
                    "question": "Explain sepsis.",
                    "max_new_tokens": 3000,
                },
            )
            assert job.status_code == 202, job.text  # queued behind the stream
            proc.send_signal(signal.SIGTERM)
            # uvicorn shuts down, then re-raises the signal it caught: exit status -SIGTERM
            assert proc.wait(timeout=120) in (0, -signal.SIGTERM), log.read_text()
            reader.join(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert "data: [DONE]" not in chunks  # the generation was cut, not waited out
    assert "engine closed" in text
    assert not list(tmp.glob("aris-uploads-*"))  # every upload removed

    from aris.store import Store

    with Store.open(f"sqlite:///{home / 'aris.db'}") as store:
        row = store.export(job.json()["id"])[0]
    assert row["status"] == "failed"
    assert row["error"] == "cancelled"
