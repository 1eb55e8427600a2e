"""``aris mcp``: the clinical tasks as MCP tools over stdio, for a local agent."""

from __future__ import annotations

from aris.cli.app import app
from aris.cli.options import engine_options
from aris.config import ArisSettings


@app.command("mcp")
@engine_options
def mcp_cmd(
    *,
    settings: ArisSettings,
) -> None:
    """Serve the tasks over MCP stdio (the HTTP transport is at /mcp of `aris serve`)."""
    from aris.context import Models
    from aris.engines import load_engine
    from aris.server.app import public_model_name
    from aris.server.mcp_tools import build_mcp
    from aris.server.metrics import Metrics
    from aris.server.runner import EngineRunner

    eng = load_engine(settings)
    try:
        runner = EngineRunner(eng, Metrics(), Models(settings, generator=eng))
        build_mcp(runner, roots=None, max_bytes=1 << 40, model_name=public_model_name(eng.model_id)).run()
    finally:
        runner.models.close()  # what it loaded besides the engine (MedASR, MedSigLIP)
        eng.close()
