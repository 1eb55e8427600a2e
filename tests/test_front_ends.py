"""Every front end runs a task the same way: the CLI, the library, a server job, the MCP tool, a batch item
and an eval item, on the same input with the same real engine (the tiny Gemma 3 VLM, greedy), give the same
prompt, the same decoding settings and the same parsed value. A front end that drifts (its own reader
settings, its own token budget, its own options) fails here."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import mcp
import pytest
from typer.testing import CliRunner

import aris
from aris.batch.manifest import WorkItem
from aris.batch.runner import run_batch
from aris.cli import app
from aris.config import ArisSettings
from aris.engines import load_engine
from aris.engines.base import Engine
from aris.eval.harness import evaluate
from aris.server import create_app
from aris.server.local import live_server
from aris.server.mcp_tools import build_mcp
from aris.server.metrics import Metrics
from aris.server.runner import EngineRunner
from aris.server.settings import ServerSettings
from aris.store import Store

CHOICES = ["adipose tissue", "lymphocytes", "tumour epithelium"]
IMAGE = "dicom/compressed/SC_jpeg_no_color_transform.dcm"  # an H&E tile from a TCGA slide


def _same(name: str, record: dict[str, Any]) -> tuple[str, str, Any]:
    assert record["task"] == "classify", name
    assert record["errors"] == [], (name, record["errors"])
    return record["prompt_sha256"], json.dumps(record["params"], sort_keys=True), record["parsed"]


@pytest.fixture(scope="module")
def settings(tiny_vlm: Path) -> ArisSettings:
    return ArisSettings(engine="transformers", model=str(tiny_vlm), device="cpu")


@pytest.fixture(scope="module")
def engine(settings: ArisSettings) -> Engine:
    eng = load_engine(settings)
    yield eng  # type: ignore[misc]
    eng.close()


@pytest.fixture
def image(samples: Any, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "tile.dcm"
    shutil.copy(samples(IMAGE), path)
    return path


def test_every_front_end_gives_the_same_prompt_settings_and_answer(
    settings: ArisSettings, engine: Engine, image: Path, tmp_path: Path, tiny_vlm: Path
) -> None:
    seen: dict[str, tuple[str, str, Any]] = {}

    # Library
    seen["library"] = _same(
        "library", aris.run("classify", [image], engine=engine, choices=CHOICES).model_dump(mode="json")
    )

    # CLI
    cli = CliRunner().invoke(
        app,
        ["run", "classify", str(image), "--choices", ",".join(CHOICES), "--json",
         "--engine", "transformers", "--model", str(tiny_vlm), "--device", "cpu"],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    seen["cli"] = _same("cli", json.loads(cli.stdout))

    # Server job (upload, job, result)
    with live_server(create_app(ServerSettings(), engine=engine)) as url:
        with image.open("rb") as f:
            upload = httpx.post(f"{url}/v1/uploads", files={"files": ("tile.dcm", f)}).json()
        job = httpx.post(
            f"{url}/v1/jobs",
            json={"task": "classify", "uploads": [upload["id"]], "options": {"choices": CHOICES}},
        )
        assert job.status_code == 202, job.text
        with httpx.stream("GET", f"{url}/v1/jobs/{job.json()['id']}/events", timeout=120) as events:
            "".join(events.iter_text())
        seen["server"] = _same("server", httpx.get(f"{url}/v1/jobs/{job.json()['id']}").json()["result"])

    # MCP tool
    async def mcp_run() -> dict[str, Any]:
        server = build_mcp(EngineRunner(engine, Metrics()), roots=None, max_bytes=1 << 30)
        async with mcp.Client(server) as c:
            out = await c.call_tool(
                "run_task", {"task": "classify", "paths": [str(image)], "options": {"choices": CHOICES}}
            )
            assert not out.is_error, out.content
            assert out.structured_content is not None
            return out.structured_content

    seen["mcp"] = _same("mcp", asyncio.run(mcp_run()))

    # Batch item and eval item (each loads the engine from settings, as a user's batch does)
    with Store.open() as store:
        summary = run_batch(
            [WorkItem(paths=(image,), task_options={"choices": CHOICES})], "classify", settings, store=store
        )
        (row,) = store.export(summary.job_id)
        seen["batch"] = _same("batch", row["result"])

        ds = tmp_path / "eval.jsonl"
        ds.write_text(
            json.dumps({"id": "1", "input": str(image), "choices": CHOICES, "answer": CHOICES[0]}) + "\n"
        )
        # prompts="app": the app's recipe, as the other front ends run it (eval's default is the report's)
        run = evaluate(
            ds, "classify", settings, out_dir=tmp_path / "eval", store=store, n_boot=10, prompts="app"
        ).run
        (eval_row,) = store.export(run["job_id"])
        seen["eval"] = _same("eval", eval_row["result"])

    reference = seen["library"]
    for name, got in seen.items():
        assert got[0] == reference[0], f"{name}: another prompt than the library's"
        assert got[1] == reference[1], f"{name}: other decoding settings: {got[1]} vs {reference[1]}"
        assert got[2] == reference[2], f"{name}: another answer: {got[2]} vs {reference[2]}"
