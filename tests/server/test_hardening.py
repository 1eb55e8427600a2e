"""Issue 14's findings 2-8, each tried the way a client (or an attacker's web page) would, against a real
uvicorn server on a real engine: llama.cpp with the 270M GGUF (text-only) and transformers with the tiny
VLM. Finding 1 (clients that hang up) is tests/server/test_abort.py."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import select
import socket
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from PIL import Image
from typer.testing import CliRunner

from aris.config import ArisSettings
from aris.errors import ConfigError
from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server

KEY = "k-hardening-0123456789"
H = {"Authorization": f"Bearer {KEY}"}
ERROR_FIELDS = {"message", "type", "param", "code"}


def _shaped(r: httpx.Response) -> dict[str, Any]:
    """The OpenAI error object of a reply, failing unless it has exactly that shape."""
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == ERROR_FIELDS, body
    return body["error"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def text_server(llama_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Keyless on loopback (the default), small body limits; the model named by nobody (its file)."""
    home = tmp_path_factory.mktemp("home")
    settings = ServerSettings(max_request_mb=1, max_upload_mb=1)
    with live_server(create_app(settings, engine=llama_engine, aris_settings=ArisSettings(home=home))) as url:
        yield url, home


@pytest.fixture(scope="module")
def keyed_server(llama_engine: Any) -> Iterator[str]:
    with live_server(
        create_app(ServerSettings(api_key=KEY, model_name="gemma3-270m"), engine=llama_engine)
    ) as url:
        yield url


@pytest.fixture(scope="module")
def vision_server(vlm_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("home")
    settings = ServerSettings()  # the model is named after its folder
    with live_server(create_app(settings, engine=vlm_engine, aris_settings=ArisSettings(home=home))) as url:
        yield url


def _png(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def _upload(url: str, name: str, data: bytes, headers: dict[str, str] | None = None) -> str:
    r = httpx.post(
        f"{url}/v1/uploads", files=[("files", (name, data, "application/octet-stream"))], headers=headers
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _events(url: str, job_id: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    out = []
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", headers=headers, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


# -- 2. an empty API key ------------------------------------------------------------------------------


def test_an_empty_key_never_opens_the_server(llama_engine: Any, gguf_270m: Path) -> None:
    for key in ("", "   "):
        with pytest.raises(ConfigError, match="empty"):
            ServerSettings(host="0.0.0.0", api_key=key).check_safe()
        with pytest.raises(ConfigError, match="empty"):  # on loopback too: it would match an empty header
            create_app(ServerSettings(api_key=key), engine=llama_engine)
    with pytest.raises(ConfigError, match="shorter than"):
        ServerSettings(host="0.0.0.0", api_key="short").check_safe()

    from aris.cli import app as cli_app

    args = ["serve", "--host", "0.0.0.0", "--api-key", "", "--engine", "llamacpp", "--model", str(gguf_270m)]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code != 0
    assert "empty" in str(result.exception)


def test_an_empty_bearer_is_refused(keyed_server: str) -> None:
    for value in ("Bearer", "", "Bearer wrong-key", "Basic " + base64.b64encode(b"x:y").decode()):
        r = httpx.get(f"{keyed_server}/v1/models", headers={"Authorization": value})
        assert r.status_code == 401
        assert _shaped(r)["type"] == "authentication_error"


# -- 3. clients choose no server-side path; results name files by URL ---------------------------------


def test_job_options_cannot_name_a_folder(vision_server: str, tmp_path: Path, samples) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "elsewhere"
    uid = _upload(vision_server, "film.dcm", samples("dicom/cxr/RG1_UNCR.dcm").read_bytes())
    r = httpx.post(
        f"{vision_server}/v1/jobs",
        json={"task": "cxr-localize", "uploads": [uid], "options": {"out_dir": str(target)}},
    )
    assert r.status_code == 422
    assert _shaped(r)["param"] == "options.out_dir"
    assert not target.exists()

    import mcp
    from mcp.client.streamable_http import streamable_http_client

    async def go() -> Any:
        async with (
            streamable_http_client(f"{vision_server}/mcp") as (read, write, *_),
            mcp.ClientSession(read, write) as s,
        ):
            await s.initialize()
            return await s.call_tool(
                "run_task", {"task": "cxr-localize", "paths": [], "options": {"out_dir": str(target)}}
            )

    refused = asyncio.run(go())
    assert refused.is_error
    assert "out_dir" in refused.content[0].text
    assert not target.exists()


def test_task_files_are_named_by_url(tmp_path: Path, samples) -> None:  # type: ignore[no-untyped-def]
    # A scripted reply (the code under test is above the engine): the tiny VLM cannot be made to
    # answer with valid boxes, and files are written only for a valid answer.
    from aris.engines.fake import FakeEngine

    reply = 'Final Answer:\n```json\n[{"box_2d": [100, 120, 800, 480], "label": "right lung"}]\n```'
    engine = FakeEngine(replies=[reply])
    home = tmp_path / "home"
    with live_server(
        create_app(ServerSettings(), engine=engine, aris_settings=ArisSettings(home=home))
    ) as url:
        uid = _upload(url, "film.dcm", samples("dicom/cxr/RG1_UNCR.dcm").read_bytes())
        job = httpx.post(
            f"{url}/v1/jobs",
            json={"task": "cxr-localize", "uploads": [uid], "options": {"labels": ["right lung"]}},
        ).json()
        events = _events(url, job["id"])
        assert events[-1]["type"] == "done", events
        record = httpx.get(f"{url}/v1/jobs/{job['id']}")
        files = record.json()["result"]["parsed"]["files"]
        assert files == {
            "boxes": f"/v1/jobs/{job['id']}/files/boxes.json",
            "overlay": f"/v1/jobs/{job['id']}/files/overlay.png",
        }
        overlay = httpx.get(url + files["overlay"])
        assert Image.open(io.BytesIO(overlay.content)).format == "PNG"
        assert str(home) not in record.text
        assert "aris-uploads" not in record.text
        assert httpx.get(f"{url}/v1/jobs/{job['id']}/files/..%2F..%2Faris.db").status_code == 404


# -- 4. DNS rebinding ---------------------------------------------------------------------------------


def test_foreign_host_and_origin_are_refused_on_every_route(text_server: tuple[str, Path]) -> None:
    url, _ = text_server
    evil = {"Host": "rebind.attacker.example"}
    for method, path in [
        ("GET", "/v1/models"),
        ("GET", "/v1/jobs"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/mcp"),
        ("GET", "/metrics"),
        ("GET", "/ui/"),
    ]:
        r = httpx.request(method, f"{url}{path}", headers=evil, json={})
        assert r.status_code == 421, (path, r.status_code)
        assert _shaped(r)["code"] == "misdirected_request"
    here = urlsplit(url).netloc
    assert (
        httpx.get(f"{url}/v1/models", headers={"Host": here.replace("127.0.0.1", "localhost")}).status_code
        == 200
    )
    foreign = httpx.get(f"{url}/v1/models", headers={"Origin": "https://attacker.example"})
    assert foreign.status_code == 403
    assert _shaped(foreign)["code"] == "origin_not_allowed"
    assert httpx.get(f"{url}/v1/models", headers={"Origin": "null"}).status_code == 403
    assert httpx.get(f"{url}/v1/models", headers={"Origin": url}).status_code == 200  # the web UI itself


def test_a_proxied_host_name_is_served_when_allowed(llama_engine: Any) -> None:
    settings = ServerSettings(allowed_hosts=["aris.hospital.example"])
    with live_server(create_app(settings, engine=llama_engine)) as url:
        proxied = {"Host": "aris.hospital.example", "Origin": "https://aris.hospital.example"}
        assert httpx.get(f"{url}/v1/models", headers=proxied).status_code == 200
        mcp = httpx.post(
            f"{url}/mcp",
            headers={**proxied, "Accept": "application/json, text/event-stream"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            },
        )
        assert mcp.status_code == 200, mcp.text
        assert httpx.get(f"{url}/v1/models", headers={"Host": "other.example"}).status_code == 421


# -- 5. body limits, counted as bytes arrive ----------------------------------------------------------


def _send_chunked(url: str, path: str, content_type: str, parts: Iterator[bytes]) -> tuple[int | None, bool]:
    """POST a chunked body; returns (the reply's status, whether the whole body could be sent)."""
    u = urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    complete = False
    with sock:
        sock.sendall(head.encode())
        try:
            for part in parts:
                if select.select([sock], [], [], 0)[0]:  # the server answered before the body ended
                    break
                sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            else:
                sock.sendall(b"0\r\n\r\n")
                complete = True
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        reply = b""
        try:
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    status = int(reply.split()[1]) if reply.startswith(b"HTTP/1.1 ") else None
    return status, complete


def test_chunked_bodies_stop_at_the_limit(text_server: tuple[str, Path]) -> None:
    url, _ = text_server
    block = b"x" * 65536

    def chat(total: int) -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(total // len(block)):
            yield block
        yield b'"}], "max_tokens": 1}'

    status, complete = _send_chunked(url, "/v1/chat/completions", "application/json", chat(70 * 1024 * 1024))
    assert status == 413
    assert not complete  # refused at the limit, not after reading 70 MB

    boundary = "aris-test-boundary"

    def multipart(total: int) -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.dcm"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(total // len(block)):
            yield block
        yield f"\r\n--{boundary}--\r\n".encode()

    ctype = f"multipart/form-data; boundary={boundary}"
    status, complete = _send_chunked(url, "/v1/uploads", ctype, multipart(40 * 1024 * 1024))
    assert status == 413
    assert not complete
    # the server is still serving
    assert httpx.get(f"{url}/v1/models").status_code == 200


def test_a_zip_may_not_expand_past_the_upload_limit(text_server: tuple[str, Path]) -> None:
    url, _ = text_server
    import secrets

    payload = secrets.token_hex(800 * 1024).encode()  # 1.6 MB of hex: compresses about 2:1, not a "bomb"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("notes/report.txt", payload)
    assert len(buf.getvalue()) < 1024 * 1024 < len(payload)
    r = httpx.post(f"{url}/v1/uploads", files=[("files", ("study.zip", buf.getvalue(), "application/zip"))])
    assert r.status_code == 400
    assert _shaped(r)["code"] == "unsafe_archive"


def test_unused_uploads_expire(llama_engine: Any, tmp_path: Path) -> None:
    settings = ServerSettings(upload_ttl_s=1)
    with live_server(
        create_app(settings, engine=llama_engine, aris_settings=ArisSettings(home=tmp_path))
    ) as url:
        uid = _upload(url, "film.png", _png())
        assert httpx.post(f"{url}/v1/uploads/{uid}/prepare", json={}).status_code == 200
        deadline = time.monotonic() + 30
        status = 200
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            status = httpx.post(f"{url}/v1/uploads/{uid}/prepare", json={}).status_code
        assert status == 404


# -- 6. a decompression bomb in a chat request --------------------------------------------------------


def test_an_image_bomb_is_413_in_the_openai_shape(vision_server: str) -> None:
    bomb = _png((20000, 20000), mode="1")  # 48 KB of PNG, 400 million pixels
    uri = "data:image/png;base64," + base64.b64encode(bomb).decode()
    content = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": "Describe."}]
    with httpx.Client(base_url=vision_server, timeout=60) as c:
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]})
        assert r.status_code == 413
        assert _shaped(r)["code"] == "image_too_large"
        assert c.get("/v1/models").status_code == 200
        uid = _upload(vision_server, "bomb.png", bomb)
        prepared = c.post(f"/v1/uploads/{uid}/prepare", json={"kind": "image"})
        assert prepared.status_code in (400, 413)
        _shaped(prepared)


# -- 7. errors in one shape, validated at submission --------------------------------------------------


def test_every_error_has_the_openai_shape(keyed_server: str) -> None:
    url = keyed_server
    r = httpx.get(f"{url}/v1/no-such-route", headers=H)
    assert r.status_code == 404
    assert _shaped(r)["type"] == "not_found_error"
    r = httpx.post(
        f"{url}/v1/chat/completions",
        headers={**H, "Content-Type": "application/json"},
        content="[" * 100_000 + "]" * 100_000,
    )
    assert r.status_code == 400
    _shaped(r)
    r = httpx.post(f"{url}/v1/uploads", headers=H, files=[("files", ("a" * 100_000 + ".dcm", b"x", "x"))])
    assert 400 <= r.status_code < 500
    _shaped(r)
    r = httpx.delete(f"{url}/v1/chat/completions", headers=H)
    assert r.status_code == 405
    _shaped(r)


def test_401_challenges_and_bearer_is_parsed_one_way(keyed_server: str) -> None:
    url = keyed_server
    r = httpx.get(f"{url}/v1/models")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.post(f"{url}/mcp", json={})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    for value in (f"bearer {KEY}", f"BEARER  {KEY}", f"Bearer {KEY}"):
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": value}).status_code == 200
        assert httpx.post(f"{url}/mcp", headers={"Authorization": value}, json={}).status_code != 401


def test_unknown_model_and_unsupported_parameters_are_refused(keyed_server: str) -> None:
    c = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key=KEY, max_retries=0)
    msgs = [{"role": "user", "content": "Hello"}]
    with pytest.raises(openai.NotFoundError) as missing:
        c.chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=2)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as many:
        c.chat.completions.create(model="gemma3-270m", messages=msgs, max_tokens=2, n=3)
    assert many.value.param == "n"
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as tools:
        c.chat.completions.create(model="gemma3-270m", messages=msgs, max_tokens=2, tools=[tool])
    assert tools.value.param == "tools"
    ok = c.chat.completions.create(model="gemma3-270m", messages=msgs, max_tokens=2, n=1)
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_job_requests_are_validated_at_submission(text_server: tuple[str, Path]) -> None:
    url, _ = text_server
    uid = _upload(url, "film.png", _png())
    for body, param in [
        (
            {"task": "text-qa", "uploads": [], "question": "Why?", "options": {"max_new_tokens": "lots"}},
            "options.max_new_tokens",
        ),
        (
            {"task": "text-qa", "uploads": [], "question": "Why?", "options": {"constrain": "maybe"}},
            "options.constrain",
        ),
        (
            {"task": "text-qa", "uploads": [], "question": "Why?", "options": {"colour": "red"}},
            "options.colour",
        ),
        ({"task": "text-qa", "uploads": []}, "question"),
        ({"task": "text-qa", "uploads": [uid], "question": "Why?"}, "uploads"),
        ({"task": "text-qa", "uploads": [], "question": "Why?", "max_new_tokens": 0}, "max_new_tokens"),
        # an image task on this text-only engine: refused now, not failed later
        ({"task": "cxr-report", "uploads": [uid]}, "task"),
    ]:
        r = httpx.post(f"{url}/v1/jobs", json=body)
        assert r.status_code == 422, (body, r.text)
        assert _shaped(r)["param"] == param
    assert httpx.get(f"{url}/v1/jobs").json() == []  # nothing was queued


# -- 8. names, not paths ------------------------------------------------------------------------------


def test_models_are_listed_by_name(text_server: tuple[str, Path], gguf_270m: Path) -> None:
    url, _ = text_server
    models = httpx.get(f"{url}/v1/models")
    assert [m["id"] for m in models.json()["data"]] == [gguf_270m.stem]
    assert str(gguf_270m.parent) not in models.text


def test_results_carry_no_server_path(vision_server: str, tiny_vlm: Path, samples) -> None:  # type: ignore[no-untyped-def]
    url = vision_server
    models = httpx.get(f"{url}/v1/models")
    assert [m["id"] for m in models.json()["data"]] == [tiny_vlm.name]
    uid = _upload(url, "Doe^Jane chest.dcm", samples("dicom/cxr/RG1_UNCR.dcm").read_bytes())
    job = httpx.post(f"{url}/v1/jobs", json={"task": "cxr-report", "uploads": [uid], "max_new_tokens": 4})
    assert job.status_code == 202, job.text
    events = _events(url, job.json()["id"])
    assert events[-1]["type"] == "done", events
    record = httpx.get(f"{url}/v1/jobs/{job.json()['id']}")
    result = record.json()["result"]
    assert result["model"] == tiny_vlm.name
    assert result["provenance"][0]["sources"] == ["00000.dcm"]
    for text in (models.text, json.dumps(events), record.text):
        assert str(tiny_vlm) not in text
        assert "aris-uploads-" not in text
        assert "Doe^Jane" not in text
