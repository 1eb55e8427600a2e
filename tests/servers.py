"""Real servers for tests, started on a free 127.0.0.1 port and always stopped.

- :func:`llama_server`: llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``)
  on a GGUF, the one real OpenAI-compatible server that runs on these CPU machines.
- :func:`stub_server`: a stdlib ``http.server`` in a thread that answers with a callback and
  records every request, for what a model server cannot be made to do on demand (fail twice,
  rate-limit, stream slowly, report a thought apart).

Both bind 127.0.0.1 only. Usage::

    with llama_server(gguf) as base_url:  # "http://127.0.0.1:PORT/v1"
        engine = OpenAIEngine(base_url)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from aris.server.local import free_port

__all__ = [
    "SSE_HEADERS",
    "Recorded",
    "Reply",
    "StubServer",
    "free_port",
    "llama_server",
    "sse",
    "sse_chat",
    "stub_server",
]

# llama-cpp-python's "hf-tokenizer-config" handler renders with an empty assistant message appended
# instead of add_generation_prompt=True; this prelude turns that back into the generation prompt,
# so the server renders exactly the template it is given.
_GENERATION_PROMPT_PRELUDE = (
    "{%- set add_generation_prompt = true -%}"
    "{%- if messages and messages[-1]['role'] == 'assistant' and not messages[-1]['content'] -%}"
    "{%- set messages = messages[:-1] -%}"
    "{%- endif -%}"
)


@contextmanager
def llama_server(
    model_path: str | Path,
    *,
    port: int | None = None,
    n_ctx: int = 2048,
    chat_format: str = "gemma",
    alias: str = "gemma3-270m",
    chat_template: str | None = None,
    api_key: str | None = None,
    n_threads: int = 2,
    ready_timeout: float = 90.0,
) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` on ``model_path``; yields its base URL ending in ``/v1``.

    ``chat_format="gemma"`` drops a system message (llama-cpp-python's built-in Gemma format).
    Pass ``chat_template`` (a Jinja Gemma 3 template, e.g. ``aris.demo.tiny.chat_template()``)
    to serve with that template instead, as llama-server does with a template in the GGUF.
    ``api_key`` makes the server require ``Authorization: Bearer <key>``.

    The port comes from :func:`free_port` (bind port 0); another process could take it in the
    moment before the server binds it, in which case the error below shows the server's log.
    """
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="aris-llama-server-") as tmp:
        args = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path),
            "--model_alias",
            alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(n_threads),
        ]
        if chat_template is not None:
            config = Path(tmp) / "tokenizer_config.json"
            config.write_text(
                json.dumps(
                    {
                        "chat_template": _GENERATION_PROMPT_PRELUDE + chat_template,
                        "bos_token": "<bos>",
                        "eos_token": "<end_of_turn>",
                    }
                )
            )
            args += ["--chat_format", "hf-tokenizer-config", "--hf_tokenizer_config_path", str(config)]
        else:
            args += ["--chat_format", chat_format]
        if api_key is not None:
            args += ["--api_key", api_key]
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            base_url = f"http://127.0.0.1:{port}/v1"
            try:
                _wait_ready(proc, base_url, api_key, ready_timeout, log_path)
                yield base_url
            finally:
                _stop(proc)


def _wait_ready(
    proc: subprocess.Popen[bytes], base_url: str, api_key: str | None, timeout: float, log_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"llama_cpp.server exited with code {proc.returncode} before answering:\n{_tail(log_path)}"
            )
        try:
            if httpx.get(f"{base_url}/models", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"llama_cpp.server did not answer /v1/models within {timeout:g} s:\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: uvicorn shuts down cleanly on SIGTERM in about a second."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return "(no log)"


# -- a scripted stdlib HTTP server -----------------------------------------------------------


@dataclass
class Recorded:
    """One request as the stub received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Reply:
    """What the stub answers: a body as bytes, or an iterable of chunks written and flushed one by one."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""


@dataclass
class StubServer:
    url: str  # http://127.0.0.1:PORT (no /v1)
    requests: list[Recorded] = field(default_factory=list)
    aborted: list[int] = field(default_factory=list)  # chunks written before a client hung up

    def to(self, path: str) -> list[Recorded]:
        """The requests whose path ends with ``path``."""
        return [r for r in self.requests if r.path.endswith(path)]


Responder = Callable[[Recorded, int], Reply]  # (request, earlier requests to the same path) -> reply


@contextmanager
def stub_server(respond: Responder) -> Iterator[StubServer]:
    """Serve ``respond`` on a free 127.0.0.1 port in a thread; records requests; stops on exit.

    Chunked bodies are written one chunk at a time with a flush (HTTP/1.0, no length: the
    connection closes at the end), so a client that closes early shows up in ``aborted``.
    """
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            rec = Recorded(self.command, self.path, dict(self.headers.items()), body, time.monotonic())
            with lock:
                index = sum(r.path == rec.path for r in stub.requests)
                stub.requests.append(rec)
            reply = respond(rec, index)
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if isinstance(reply.body, bytes):
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                return
            self.end_headers()
            written = 0
            try:
                for chunk in reply.body:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    written += 1
            except (BrokenPipeError, ConnectionResetError):
                with lock:
                    stub.aborted.append(written)

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    stub = StubServer(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def sse(*events: dict[str, object] | str, delay: float = 0.0) -> Iterator[bytes]:
    """Server-sent events as an OpenAI server writes them; a str is sent raw (e.g. ``"[DONE]"``)."""
    for event in events:
        if delay:
            time.sleep(delay)
        data = event if isinstance(event, str) else json.dumps(event)
        yield f"data: {data}\n\n".encode()


def sse_chat(*contents: str, reasoning: Iterable[str] = (), delay: float = 0.0) -> Iterator[bytes]:
    """A streamed chat completion: optional ``reasoning_content`` deltas, then content, then [DONE]."""

    def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events: list[dict[str, object] | str] = [chunk({"role": "assistant"})]
    events += [chunk({"reasoning_content": r}) for r in reasoning]
    events += [chunk({"content": c}) for c in contents]
    events += [chunk({}, "stop"), "[DONE]"]
    return sse(*events, delay=delay)


SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
