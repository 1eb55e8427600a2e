"""Clients that go away mid-request must not take the server with them (issue 14, finding 1).

On both real engines (llama.cpp with the 270M GGUF, transformers with the tiny VLM): 20 requests are
abandoned at random points -- by the official ``openai`` SDK's ``stream.close()``, by httpx leaving a
stream, and by raw sockets closed before the body is sent, before the reply, or after a few bytes of
it, some while queued behind others -- then 20 ordinary requests must all be answered and ``/metrics``
must come back to nothing in flight and nothing queued.

Aborted requests ask for 1024 tokens: a generation that went on for nobody would hold the engine for
a long time, and the ordinary requests queued behind it would run out their client timeout.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server

NAME = "served"
PROMPT = [{"role": "user", "content": "Write a long, detailed history of medicine, century by century."}]
ABORTED_TOKENS = 1024


@pytest.fixture(scope="module", params=["llamacpp", "transformers"])
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    engine = request.getfixturevalue("llama_engine" if request.param == "llamacpp" else "vlm_engine")
    with live_server(create_app(ServerSettings(model_name=NAME), engine=engine)) as url:
        yield url


def _body(stream: bool, max_tokens: int = ABORTED_TOKENS) -> dict[str, Any]:
    return {"model": NAME, "messages": PROMPT, "stream": stream, "max_tokens": max_tokens}


def abort_openai(url: str, rng: random.Random) -> str:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
    stream = client.chat.completions.create(
        model=NAME, messages=PROMPT, max_tokens=ABORTED_TOKENS, stream=True
    )
    keep = rng.randint(0, 6)
    for i, _chunk in enumerate(stream):
        if i >= keep:
            break
    stream.close()
    return f"openai stream.close() after {keep} chunks"


def abort_httpx(url: str, rng: random.Random) -> str:
    keep = rng.randint(0, 6)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=_body(True), timeout=120) as r:
        for i, _line in enumerate(r.iter_lines()):
            if i >= keep:
                break
    return f"httpx left the stream after {keep} lines"


def _raw(url: str, body: dict[str, Any]) -> tuple[socket.socket, bytes]:
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=120)
    return sock, head + data


def abort_socket(url: str, rng: random.Random) -> str:
    stream = rng.random() < 0.7
    sock, request = _raw(url, _body(stream))
    # A plain reply comes whole at the end, so a plain request is left before it: mid-body or after sending.
    how = rng.choice(["mid-body", "before-reply", "after-bytes"] if stream else ["mid-body", "before-reply"])
    with sock:
        if how == "mid-body":
            sock.sendall(request[: rng.randint(1, len(request) - 1)])
        else:
            sock.sendall(request)
            if how == "after-bytes":
                want, got = rng.randint(1, 600), 0
                while got < want:
                    chunk = sock.recv(want - got)
                    if not chunk:
                        break
                    got += len(chunk)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    return f"raw socket ({'stream' if stream else 'plain'}) closed {how}"


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_twenty_aborted_requests_then_twenty_answered(server: str) -> None:
    rng = random.Random(14)
    aborts: list[Callable[[str, random.Random], str]] = [abort_openai, abort_httpx, abort_socket]
    plan = [(rng.choice(aborts), random.Random(rng.random())) for _ in range(20)]
    # Three at a time: some are aborted while queued behind another's generation.
    with ThreadPoolExecutor(3) as pool:
        done = list(pool.map(lambda p: p[0](server, p[1]), plan))
    assert len(done) == 20

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0, timeout=120)
    answered = 0
    for i in range(20):
        if i % 2:
            reply = client.chat.completions.create(
                model=NAME, messages=[{"role": "user", "content": f"Say hello {i}."}], max_tokens=4
            )
            assert reply.choices[0].finish_reason in ("stop", "length")
        else:
            chunks = list(
                client.chat.completions.create(
                    model=NAME,
                    messages=[{"role": "user", "content": f"Count to {i}."}],
                    max_tokens=4,
                    stream=True,
                )
            )
            assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        answered += 1
    assert answered == 20

    deadline = time.monotonic() + 30
    while True:
        text = httpx.get(f"{server}/metrics").text
        idle = _gauge(text, "aris_generations_in_flight") == 0 and _gauge(text, "aris_queue_depth") == 0
        if idle or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert _gauge(text, "aris_generations_in_flight") == 0
    assert _gauge(text, "aris_queue_depth") == 0
