"""``POST /v1/audio/transcriptions`` driven by the official ``openai`` client against a real server:
the app on uvicorn (as ``aris serve`` runs it) with the tiny MedASR, and once the ``aris serve`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from aris.config import ArisSettings
from aris.engines.fake import FakeEngine
from aris.server import create_app
from aris.server.local import free_port, live_server
from aris.server.settings import ServerSettings

KEY = "s3cret"


ENGINE = FakeEngine()  # the server's generator: scripted, for dictation-report jobs
REPORT = "FINDINGS: The lungs are clear.\nIMPRESSION: No acute findings."


@pytest.fixture(scope="module")
def server(tiny_asr: Path, clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Module-scoped: set up before the per-test ARIS_HOME, so it gets a home of its own.
    home = tmp_path_factory.mktemp("aris-home")
    settings = ArisSettings(home=home, asr_model=str(tiny_asr), device="cpu")
    roots = [str(clips["short"].parent)]
    app = create_app(ServerSettings(api_key=KEY, mcp_roots=roots), engine=ENGINE, aris_settings=settings)
    with live_server(app) as url:
        yield url


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_json_and_text(server: str, clips: dict[str, Path], heard) -> None:  # type: ignore[no-untyped-def]
    expected = heard("short")
    with clips["short"].open("rb") as f:
        resp = client(server).audio.transcriptions.create(model="google/medasr", file=f)
    assert resp.text == expected.text
    with clips["short"].open("rb") as f:
        text = client(server).audio.transcriptions.create(
            model="google/medasr", file=f, response_format="text"
        )
    assert text == expected.text


def test_verbose_json_with_word_timings(server: str, clips: dict[str, Path], heard) -> None:  # type: ignore[no-untyped-def]
    expected = heard("long")
    with clips["long"].open("rb") as f:
        resp = client(server).audio.transcriptions.create(
            model="google/medasr",
            file=f,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert resp.text == expected.text
    assert resp.duration == pytest.approx(expected.duration)
    assert [w.word for w in resp.words or []] == [w.text for w in expected.words]
    assert [(w.start, w.end) for w in resp.words or []] == [(w.start, w.end) for w in expected.words]
    assert [s.start for s in resp.segments or []] == [0.0, 16.0, 32.0, 48.0]
    extra = resp.model_extra or {}
    assert extra["aris"]["raw_text"] == expected.raw_text
    assert "not" in extra["aris"]["notice"].lower()


def test_streaming_partial_transcripts(server: str, clips: dict[str, Path], heard) -> None:  # type: ignore[no-untyped-def]
    expected = heard("long")
    with clips["long"].open("rb") as f:
        stream = client(server).audio.transcriptions.create(model="google/medasr", file=f, stream=True)
        events = list(stream)
    assert [e.type for e in events] == ["transcript.text.delta"] * 4 + ["transcript.text.done"]
    assert "".join(e.delta for e in events[:-1]) == expected.text
    assert events[-1].text == expected.text
    seconds = [e.model_extra["aris"]["seconds_done"] for e in events[:-1]]  # type: ignore[index]
    assert seconds == sorted(seconds)


def test_bad_audio_is_a_400_without_paths(server: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with empty.open("rb") as f, pytest.raises(openai.BadRequestError) as e:
        client(server).audio.transcriptions.create(model="google/medasr", file=f)
    body = e.value.body
    assert isinstance(body, dict)
    assert body["message"] == "the file is empty (0 bytes); nothing to transcribe"
    assert body["param"] == "file"
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio")
    with notes.open("rb") as f, pytest.raises(openai.BadRequestError, match="not an audio file"):
        client(server).audio.transcriptions.create(model="google/medasr", file=f)


def test_refusals(server: str, clips: dict[str, Path]) -> None:
    with clips["short"].open("rb") as f, pytest.raises(openai.BadRequestError, match="srt"):
        client(server).audio.transcriptions.create(model="google/medasr", file=f, response_format="srt")
    with clips["short"].open("rb") as f, pytest.raises(openai.BadRequestError, match="English only"):
        client(server).audio.transcriptions.create(model="google/medasr", file=f, language="de")
    with clips["short"].open("rb") as f, pytest.raises(openai.AuthenticationError):
        client(server, key="wrong").audio.transcriptions.create(model="google/medasr", file=f)


def test_server_without_medasr_says_404(clips: dict[str, Path], tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    app = create_app(ServerSettings(), engine=FakeEngine(), aris_settings=ArisSettings())
    with live_server(app) as url, clips["short"].open("rb") as f, pytest.raises(openai.NotFoundError):
        client(url, key="none").audio.transcriptions.create(model="google/medasr", file=f)


def test_the_aris_serve_command(
    tiny_asr: Path, clips: dict[str, Path], transcriber, tmp_path: Path, heard
) -> None:  # type: ignore[no-untyped-def]
    """``aris serve`` itself (its --asr-model flag reaches the transcriber) answers the OpenAI client.

    The generator is the scripted engine: transcription does not use it.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "aris.cli", "serve", "--port", str(port), "--engine", "fake"]
    cmd += ["--asr-model", str(tiny_asr), "--device", "cpu"]
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        with clips["stereo"].open("rb") as f:
            resp = client(url, key="none").audio.transcriptions.create(model="google/medasr", file=f)
        assert resp.text == heard("stereo").text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dictation_report_as_a_job(
    server: str, clips: dict[str, Path], tiny_asr: Path, monkeypatch, heard
) -> None:  # type: ignore[no-untyped-def]
    """The task API reaches the task through the runner. Jobs load their models from the environment
    and config file (ARIS_ASR_MODEL), not from ``aris serve``'s flags."""
    monkeypatch.setenv("ARIS_ASR_MODEL", str(tiny_asr))
    monkeypatch.setenv("ARIS_DEVICE", "cpu")
    ENGINE.enqueue(REPORT)
    headers = {"Authorization": f"Bearer {KEY}"}
    files = [("files", ("dictation.wav", clips["short"].read_bytes(), "audio/wav"))]
    upload = httpx.post(f"{server}/v1/uploads", files=files, headers=headers)
    assert upload.status_code == 201, upload.text
    job = httpx.post(
        f"{server}/v1/jobs",
        json={"task": "dictation-report", "uploads": [upload.json()["id"]]},
        headers=headers,
    )
    assert job.status_code == 202, job.text
    events = []
    with httpx.stream(
        "GET", f"{server}/v1/jobs/{job.json()['id']}/events", headers=headers, timeout=120
    ) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events][-2:] == ["result", "done"], events
    assert events[1]["kinds"] == ["audio"]
    result = events[-2]["result"]
    assert result["parsed"]["impression"] == "No acute findings."
    assert result["parsed"]["transcript"] == heard("short").text


def test_dictation_report_as_an_mcp_tool(
    server: str, clips: dict[str, Path], tiny_asr: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    import mcp
    from mcp.client.streamable_http import streamable_http_client

    monkeypatch.setenv("ARIS_ASR_MODEL", str(tiny_asr))
    ENGINE.enqueue(REPORT)

    async def go() -> dict[str, Any]:
        http = httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        async with (
            streamable_http_client(f"{server}/mcp", http_client=http) as (read, write, *_),
            mcp.ClientSession(read, write) as s,
        ):
            await s.initialize()
            prepared = await s.call_tool("prepare_input", {"path": str(clips["short"])})
            assert json.loads(prepared.content[0].text)["kind"] == "audio"
            done = await s.call_tool("run_task", {"task": "dictation-report", "paths": [str(clips["short"])]})
            assert not done.is_error, done.content
            return dict(json.loads(done.content[0].text))

    record = asyncio.run(go())
    assert record["parsed"]["impression"] == "No acute findings."
    assert record["provenance"][0]["details"]["transcript"]["words"]


def test_a_dictation_reports_key_holds_the_transcriber_too(tiny_asr: Path, tmp_path: Path) -> None:
    # Keyed by the generator alone, a server restarted with another ASR model served the reports the
    # old transcriber's words had produced.
    from fastapi.testclient import TestClient

    app = create_app(
        ServerSettings(api_key=KEY),
        engine=FakeEngine(),
        aris_settings=ArisSettings(home=tmp_path, asr_model=str(tiny_asr), device="cpu"),
    )
    with TestClient(app):
        jobs = app.state.jobs
        both = jobs.identity("dictation-report")
        assert set(both) == {"transcriber", "generator"}
        assert both["transcriber"]["weights"]  # the tiny MedASR's digest
        assert both["generator"]["engine"] == "fake"
        # a MedGemma-only task keeps the generator's identity itself, as batch keys it
        assert jobs.identity("cxr-report") == both["generator"]
