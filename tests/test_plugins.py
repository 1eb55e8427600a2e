"""Plugins through entry points: the example package in tests/plugins (installed by scripts/install.sh)
adds a reader, a task and an engine, and every front end sees them without a line of Aris changing."""

from __future__ import annotations

import asyncio
import json
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import mcp
import pytest
from typer.testing import CliRunner

from aris.cli import app
from aris.config import ArisSettings
from aris.engines import ENGINES, load_engine
from aris.inputs import READERS, read
from aris.server import create_app
from aris.server.local import live_server
from aris.server.mcp_tools import build_mcp
from aris.server.metrics import Metrics
from aris.server.runner import EngineRunner
from aris.server.settings import ServerSettings
from aris.tasks import TASKS

REPLY = "Three days of fever and productive cough."


@pytest.fixture(autouse=True, scope="module")
def plugin_installed() -> None:
    names = {ep.name for ep in entry_points(group="aris.tasks")}
    if "note-summary" not in names:
        pytest.fail("the example plugin is not installed: pip install -e tests/plugins/aris-example-plugin")


@pytest.fixture
def note(tmp_path: Path) -> Path:
    path = tmp_path / "visit.note"
    path.write_text("NOTE\nSeen today. Fever 38.5 C for three days, productive cough, no chest pain.\n")
    return path


def test_registries_list_the_plugin_beside_the_built_ins() -> None:
    assert "note-summary" in TASKS
    assert TASKS.origin("note-summary") == "aris-example-plugin"
    assert TASKS.origin("ct") == "aris"
    assert "canned" in ENGINES
    assert "note" in READERS


def test_the_plugin_reader_claims_its_files(note: Path) -> None:
    prepared = read(note)  # kind detected by the plugin's sniff
    assert prepared.kind == "note"
    assert "productive cough" in (prepared.text or "")


def test_cli_help_flags_and_run(note: Path) -> None:
    runner = CliRunner()
    listing = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert "note-summary" in listing.output
    assert "example plugin" in listing.output
    help_text = runner.invoke(app, ["run", "note-summary", "--help"], env={"COLUMNS": "200"}).output
    assert "--words" in help_text  # from the task's Options model
    result = runner.invoke(
        app,
        [
            "run",
            "note-summary",
            str(note),
            "--words",
            "4",
            "--engine",
            "canned",
            "--engine-arg",
            f"reply={REPLY}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Three days of fever" in result.output
    as_json = runner.invoke(
        app,
        ["run", "note-summary", str(note), "--json", "--engine", "canned", "--engine-arg", f"reply={REPLY}"],
    )
    record = json.loads(as_json.stdout)
    assert record["task"] == "note-summary"
    assert record["engine"] == "canned"
    assert record["parsed"] == {"summary": REPLY}
    bad = runner.invoke(app, ["run", "note-summary", str(note), "--words", "1", "--engine", "canned"])
    assert bad.exit_code != 0
    assert "words" in str(bad.exception)


def test_server_lists_and_runs_the_plugin_task(note: Path) -> None:
    engine = load_engine(ArisSettings(engine="canned", engine_args={"reply": REPLY}))
    with live_server(create_app(ServerSettings(), engine=engine)) as url:
        tasks = httpx.get(f"{url}/v1/tasks").json()
        assert "note-summary" in {t["name"] for t in tasks}
        with note.open("rb") as f:
            upload = httpx.post(f"{url}/v1/uploads", files={"files": ("visit.note", f)}).json()
        job = httpx.post(
            f"{url}/v1/jobs",
            json={"task": "note-summary", "uploads": [upload["id"]], "options": {"words": 3}},
        )
        assert job.status_code in (200, 202), job.text
        job_id = job.json()["id"]
        with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", timeout=60) as events:
            text = "".join(events.iter_text())
        assert '"type": "done"' in text or '"type":"done"' in text, text
        result = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        assert result["result"]["parsed"] == {"summary": "Three days of"}


def test_mcp_lists_and_runs_the_plugin_task(note: Path) -> None:
    engine = load_engine(ArisSettings(engine="canned", engine_args={"reply": REPLY}))
    server = build_mcp(EngineRunner(engine, Metrics()), roots=None, max_bytes=1 << 30)

    async def go() -> None:
        async with mcp.Client(server) as c:
            tasks = (await c.call_tool("list_tasks", {})).structured_content
            assert tasks is not None
            names = {t["name"] for t in tasks.get("result", tasks)}
            assert "note-summary" in names
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert "note-summary" in tools["run_task"].input_schema["properties"]["task"]["enum"]
            result = await c.call_tool("run_task", {"task": "note-summary", "paths": [str(note)]})
            assert not result.is_error, result.content
            record = result.structured_content
            assert record is not None
            assert record["parsed"] == {"summary": REPLY}

    asyncio.run(go())
