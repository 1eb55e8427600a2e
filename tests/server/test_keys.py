"""Named API keys for a hospital deployment: made by ``aris keygen`` (only digests at rest), each with an
optional task allow-list and limits (429 + Retry-After), each named in the audit trail for every job and
chat request, each seeing only its own uploads and jobs. Real server, the 270M GGUF through llama.cpp."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from aris.config import ArisSettings
from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server


@pytest.fixture(scope="module")
def keyed(llama_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from aris.cli import app as cli_app

    folder = tmp_path_factory.mktemp("keys")
    keys_file = folder / "keys.toml"
    keys = {}
    for name, extra in [
        ("radiology", ["--task", "text-qa"]),
        ("admin", []),
        ("limited", ["--max-concurrent", "1", "--rate-per-minute", "3"]),
    ]:
        made = CliRunner().invoke(cli_app, ["keygen", name, "--keys-file", str(keys_file), *extra])
        assert made.exit_code == 0, made.output
        keys[name] = made.stdout.strip().splitlines()[-1]
    home = folder / "home"
    app = create_app(
        ServerSettings(api_keys_file=keys_file), engine=llama_engine, aris_settings=ArisSettings(home=home)
    )
    with live_server(app) as url:
        yield {"url": url, "keys": keys, "file": keys_file, "home": home}


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _wait_done(url: str, job_id: str, key: str) -> list[dict[str, Any]]:
    events = []
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", headers=_h(key), timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def test_the_keys_file_holds_digests_only(keyed: dict[str, Any]) -> None:
    from aris.cli import app as cli_app

    text = keyed["file"].read_text()
    assert stat.S_IMODE(keyed["file"].stat().st_mode) == 0o600
    for key in keyed["keys"].values():
        assert key not in text
        assert hashlib.sha256(key.encode()).hexdigest() in text
    again = CliRunner().invoke(cli_app, ["keygen", "admin", "--keys-file", str(keyed["file"])])
    assert again.exit_code != 0
    assert "exists already" in str(again.exception)


def test_allow_lists_audit_and_isolation(keyed: dict[str, Any]) -> None:
    url, keys = keyed["url"], keyed["keys"]
    job = httpx.post(
        f"{url}/v1/jobs",
        json={"task": "text-qa", "uploads": [], "question": "Is aspirin an NSAID?", "max_new_tokens": 3},
        headers=_h(keys["radiology"]),
    )
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    assert _wait_done(url, job_id, keys["radiology"])[-1]["type"] == "done"

    refused = httpx.post(
        f"{url}/v1/jobs",
        json={"task": "ehr-summary", "uploads": []},
        headers=_h(keys["radiology"]),
    )
    assert refused.status_code == 403
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=f"{url}/v1", api_key=keys["radiology"], max_retries=0).chat.completions.create(
            model="gemma-3-270m-q4_k_m", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    admin = openai.OpenAI(base_url=f"{url}/v1", api_key=keys["admin"], max_retries=0)
    served = admin.models.list().data[0].id
    admin.chat.completions.create(model=served, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)

    # each key sees its own jobs only
    assert httpx.get(f"{url}/v1/jobs/{job_id}", headers=_h(keys["admin"])).status_code == 404
    assert httpx.get(f"{url}/v1/jobs", headers=_h(keys["admin"])).json() == []
    assert [j["id"] for j in httpx.get(f"{url}/v1/jobs", headers=_h(keys["radiology"])).json()] == [job_id]

    from aris.store import Store

    db = keyed["home"] / "aris.db"
    with Store.open(f"sqlite:///{db}") as store:
        trail = store.audit_trail(job_id)
        assert [(a.action, a.actor) for a in trail if a.action == "job.submit"] == [
            ("job.submit", "key:radiology")
        ]
        assert [a.action for a in trail].count("item.done") == 1
        assert "item.reused" not in [a.action for a in trail]
        assert "key:admin" in {a.actor for a in store.audit_trail(action="chat.completion")}
    stored = b"".join(p.read_bytes() for p in keyed["home"].glob("aris.db*"))
    for key in keys.values():
        assert key.encode() not in stored

    async def mcp_refuses() -> Any:
        import mcp
        from mcp.client.streamable_http import streamable_http_client

        http = httpx.AsyncClient(headers=_h(keys["radiology"]))
        async with (
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, *_),
            mcp.ClientSession(read, write) as s,
        ):
            await s.initialize()
            return await s.call_tool("run_task", {"task": "ehr-summary", "paths": []})

    result = asyncio.run(mcp_refuses())
    assert result.is_error
    assert "may not run task ehr-summary" in result.content[0].text


def test_per_key_limits_answer_429_with_retry_after(keyed: dict[str, Any]) -> None:
    url, key = keyed["url"], keyed["keys"]["limited"]
    body = {
        "messages": [{"role": "user", "content": "Tell a long story."}],
        "max_tokens": 400,
        "stream": True,
    }
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=_h(key), timeout=120) as r:
        lines = r.iter_lines()  # kept: a discarded iterator would close the stream
        next(lines)  # the stream is open: one request in flight
        busy = httpx.post(
            f"{url}/v1/chat/completions", json={**body, "stream": False}, headers=_h(key), timeout=60
        )
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["type"] == "rate_limit_error"
    # Two more work requests fit the 3 a minute (a refused one does not count), then 429 again.
    short = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    statuses = []
    deadline = time.monotonic() + 120
    while len(statuses) < 3 and time.monotonic() < deadline:
        r = httpx.post(f"{url}/v1/chat/completions", json=short, headers=_h(key), timeout=60)
        if r.status_code == 429 and "in flight" in r.json()["error"]["message"]:
            time.sleep(0.05)  # the aborted stream is still being wound up
            continue
        statuses.append((r.status_code, r.headers.get("retry-after")))
    assert [s for s, _ in statuses] == [200, 200, 429], statuses
    assert 1 <= int(statuses[-1][1] or 0) <= 60
    # another key is not limited by this one
    assert (
        httpx.post(f"{url}/v1/chat/completions", json=short, headers=_h(keyed["keys"]["admin"])).status_code
        == 200
    )


def test_bad_keys_files_fail_at_startup(tmp_path: Path) -> None:
    from aris.errors import ConfigError

    bad = tmp_path / "keys.toml"
    for text, problem in [
        ('[[key]]\nname = "x"\nsha256 = "abc"\n', "64 lowercase hex"),
        ('[[key]]\nname = "a b"\nsha256 = "' + "0" * 64 + '"\n', "name must be"),
        ('[[key]]\nname = "x"\nsha256 = "' + "0" * 64 + '"\nadmin = true\n', "unknown field"),
        ("", "no [[key]] entries"),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=problem.replace("[", r"\[")):
            create_app(ServerSettings(api_keys_file=bad))
