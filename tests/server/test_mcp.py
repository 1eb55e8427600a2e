"""The tasks as MCP tools, through the official SDK's client: stdio (a spawned `aris mcp`) and
streamable HTTP (/mcp of a running server), on real engines."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import mcp
from mcp.client.stdio import StdioServerParameters

from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server


def _structured(result) -> dict:  # type: ignore[no-untyped-def]
    assert not result.is_error, result.content
    if result.structured_content is not None:
        value = result.structured_content
        return value.get("result", value) if isinstance(value, dict) else value
    return json.loads(result.content[0].text)


def test_stdio_tools_prepare_and_run_a_fhir_task(gguf_270m: Path, samples) -> None:  # type: ignore[no-untyped-def]
    bundle = str(samples("fhir/synthetic_patient_bundle_r4.json"))
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aris", "mcp", "--engine", "llamacpp", "--model", str(gguf_270m), "--n-ctx", "8192"],
    )

    async def go() -> None:
        async with mcp.Client(params) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert names == {"list_tasks", "prepare_input", "run_task", "search_images"}
            tasks = _structured(await c.call_tool("list_tasks", {}))
            assert any(t["name"] == "ehr-summary" for t in tasks)
            prepared = _structured(await c.call_tool("prepare_input", {"path": bundle}))
            assert prepared["kind"] == "fhir"
            result = _structured(
                await c.call_tool(
                    "run_task",
                    {
                        # A short text question, unconstrained: the 270M model is text-only and slow on
                        # grammars; the FHIR path is covered by prepare_input above and tests/tasks.
                        "task": "text-qa",
                        "paths": [],
                        "question": "Which vitamin deficiency causes scurvy?",
                        "think": False,
                        "max_new_tokens": 8,
                        "options": {"constrain": False},
                    },
                )
            )
            assert result["notice"].startswith("Preliminary")
            assert result["engine"] == "llamacpp"
            bad = await c.call_tool("prepare_input", {"path": "/nonexistent/file.dcm"})
            assert bad.is_error

    asyncio.run(go())


def test_http_tools_respect_the_key_and_the_roots(samples) -> None:  # type: ignore[no-untyped-def]
    from aris.engines.fake import FakeEngine

    roots = [str(samples("dicom/ct_series"))]
    app = create_app(ServerSettings(api_key="k", mcp_roots=roots), engine=FakeEngine())
    with live_server(app) as url:
        import httpx

        assert httpx.post(f"{url}/mcp", json={}).status_code == 401

        async def go() -> None:
            http = httpx.AsyncClient(headers={"Authorization": "Bearer k"})
            from mcp.client.streamable_http import streamable_http_client

            async with (
                streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, *_),
                mcp.ClientSession(read, write) as s,
            ):
                await s.initialize()
                ok = await s.call_tool(
                    "prepare_input", {"path": roots[0] + "/head_ct2_4slices", "kind": "ct"}
                )
                assert _structured(ok)["images"] == 4
                denied = await s.call_tool("prepare_input", {"path": str(samples("dicom/cxr/RG1_UNCR.dcm"))})
                assert denied.is_error
                assert "outside the folders" in denied.content[0].text

        asyncio.run(go())
