"""``POST /v1/audio/transcriptions`` in OpenAI's shape, served by MedASR.

Multipart form, as the official ``openai`` client sends it (``client.audio.transcriptions.create``):

- ``file`` (required): WAV, FLAC or Ogg; MP3, M4A or WebM when ffmpeg is installed on the server.
- ``model``: accepted and not checked (the server has one speech model, ``--asr-model``).
- ``response_format``: ``json`` (default) -> ``{"text", "usage": {"type": "duration", "seconds"}}``;
  ``text`` -> the text alone; ``verbose_json`` -> ``{"task", "language", "duration", "text",
  "segments": [{"id", "start", "end", "text"}], "words": [{"word", "start", "end"}]}`` (words with
  ``timestamp_granularities[]=word``, segments by default or with ``=segment``), plus ``"aris"``:
  ``{"raw_text", "decoder", "audio_sha256", "notice"}``. ``srt``/``vtt`` are refused (400).
- ``stream=true``: server-sent events, one ``{"type": "transcript.text.delta", "delta", "aris":
  {"seconds_done", "seconds_total"}}`` per 20 s window (the deltas add up to the text; a delta may be
  empty while a word waits for the next window), then ``{"type": "transcript.text.done", "text"}``.
  A failure after the stream began is a ``{"error": {...}}`` event.
- ``language``: only English (``en``); anything else is refused. ``prompt`` and ``temperature`` are
  accepted and ignored (MedASR takes no prompt; decoding is greedy or beam search).

Errors are OpenAI-shaped (``{"error": {"message", "type", "param", "code"}}``), never with a path.
The model loads on the first request, so a server without MedASR still serves MedGemma.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from aris.errors import ArisError
from aris.notice import NOTICE
from aris.server.errors import APIError, error_body, from_aris
from aris.server.routes import require_key

logger = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_key)], tags=["audio"])
FORMATS = ("json", "text", "verbose_json")
_COPY = 1 << 20


def attach(app: FastAPI) -> None:
    """Add the transcription route; it uses the server's transcriber (the one its jobs use), loaded on
    first use from the server's settings and closed with its models."""
    app.include_router(router)


def _transcriber(app: FastAPI) -> Any:
    return app.state.runner.models.get("transcriber")


class _Cancelled(Exception):
    """The client went away; stop transcribing."""


async def _save(upload: UploadFile, dest: Path, limit: int) -> None:
    total = 0
    with dest.open("wb") as out:
        while chunk := await upload.read(_COPY):
            total += len(chunk)
            if total > limit:
                raise APIError(413, "audio file over the size limit", code="payload_too_large", param="file")
            out.write(chunk)


def _api_error(e: ArisError) -> APIError:
    err = from_aris(e)
    if err.code == "invalid_input":
        err.param = "file"
    return err


@router.post("/v1/audio/transcriptions", response_model=None)
async def transcriptions(
    request: Request,
    file: UploadFile = File(..., description="The recording."),
    model: str | None = Form(default=None, description="Accepted, not checked: MedASR serves."),
    response_format: str = Form(default="json", description="json | text | verbose_json"),
    stream: bool = Form(default=False, description="Server-sent transcript.text.delta/done events."),
    language: str | None = Form(default=None, description="en only."),
    prompt: str | None = Form(default=None, description="Ignored: MedASR takes no prompt."),
    temperature: float | None = Form(default=None, description="Ignored."),
    timestamp_granularities: list[str] = Form(default_factory=list, alias="timestamp_granularities[]"),
) -> Any:
    if response_format not in FORMATS:
        raise APIError(
            400,
            f"response_format {response_format!r} is not supported; use {', '.join(FORMATS)}",
            param="response_format",
        )
    if language and not language.lower().startswith("en"):
        raise APIError(400, "MedASR transcribes English only", param="language", code="unsupported_language")
    app = request.app
    settings = app.state.aris_settings
    limit = app.state.settings.max_request_mb * 1024 * 1024
    tmp = Path(tempfile.mkdtemp(prefix="aris-audio-"))  # mkdtemp: mode 0700, name not the client's
    try:
        await _save(file, tmp / "upload", limit)
        try:
            from aris.speech.audio import load_audio

            audio = await asyncio.to_thread(load_audio, tmp / "upload", max_seconds=settings.asr_max_seconds)
            transcriber = await asyncio.to_thread(_transcriber, app)
        except ArisError as e:
            raise _api_error(e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    words = "word" in timestamp_granularities
    segments = "segment" in timestamp_granularities or not timestamp_granularities
    if stream:
        return StreamingResponse(
            _events(transcriber, audio),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        transcript = await asyncio.to_thread(transcriber.transcribe, audio)
    except ArisError as e:
        raise _api_error(e) from None
    if response_format == "text":
        return PlainTextResponse(transcript.text)
    if response_format == "json":
        return JSONResponse(
            {"text": transcript.text, "usage": {"type": "duration", "seconds": transcript.duration}}
        )
    return JSONResponse(verbose(transcript, audio.sha256, words=words, segments=segments))


def verbose(transcript: Any, sha256: str, *, words: bool, segments: bool) -> dict[str, Any]:
    """OpenAI's ``verbose_json`` for a transcript (chunks as segments), plus Aris's own fields."""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": "english",
        "duration": transcript.duration,
        "text": transcript.text,
    }
    if segments:
        body["segments"] = [
            {"id": c.index, "start": c.start, "end": c.end, "text": c.text} for c in transcript.chunks
        ]
    if words:
        body["words"] = [{"word": w.text, "start": w.start, "end": w.end} for w in transcript.words]
    body["aris"] = {
        "raw_text": transcript.raw_text,
        "decoder": transcript.decoder,
        "audio_sha256": sha256,
        "notice": NOTICE,
    }
    return body


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


async def _events(transcriber: Any, audio: Any) -> AsyncIterator[bytes]:
    """Deltas as each window is done, from a worker thread; closing the stream stops the work."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    gone = threading.Event()

    def progress(p: Any) -> None:
        if gone.is_set():
            raise _Cancelled
        event = {
            "type": "transcript.text.delta",
            "delta": p.delta,
            "aris": {"seconds_done": round(p.seconds_done, 2), "seconds_total": round(p.seconds_total, 2)},
        }
        loop.call_soon_threadsafe(queue.put_nowait, ("event", event))

    def work() -> None:
        try:
            t = transcriber.transcribe(audio, on_progress=progress)
            loop.call_soon_threadsafe(queue.put_nowait, ("done", t))
        except _Cancelled:
            loop.call_soon_threadsafe(queue.put_nowait, ("cancelled", None))
        except BaseException as e:  # handed to the stream, which reports it as an error event
            loop.call_soon_threadsafe(queue.put_nowait, ("error", e))

    worker = threading.Thread(target=work, name="aris-transcribe", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "event":
                yield _sse(value)
            elif kind == "done":
                yield _sse({"type": "transcript.text.done", "text": value.text})
                return
            elif kind == "error":
                if isinstance(value, ArisError):
                    err = _api_error(value)
                    yield _sse(error_body(err.message, err.err_type, err.code, err.param))
                else:
                    logger.error("transcription failed: %s", type(value).__name__)
                    yield _sse(error_body("internal error", "server_error"))
                return
            else:
                return
    finally:
        gone.set()
        await asyncio.to_thread(worker.join)
