"""``aris mcp``: the clinical tasks as MCP tools over stdio, for a local agent."""

from __future__ import annotations

from aris.cli.app import app
from aris.cli.options import (
    AdapterOpt,
    BaseUrlOpt,
    DeviceOpt,
    DtypeOpt,
    EngineOpt,
    MmprojOpt,
    ModelOpt,
    NCtxOpt,
    QuantOpt,
    settings_from,
)


@app.command("mcp")
def mcp_cmd(
    engine: EngineOpt = None,
    model: ModelOpt = None,
    mmproj: MmprojOpt = None,
    base_url: BaseUrlOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    quantization: QuantOpt = None,
    adapter: AdapterOpt = None,
    n_ctx: NCtxOpt = None,
) -> None:
    """Serve the tasks over MCP stdio (the HTTP transport is at /mcp of `aris serve`)."""
    from aris.engines import load_engine
    from aris.server.mcp_tools import build_mcp
    from aris.server.metrics import Metrics
    from aris.server.runner import EngineRunner

    settings = settings_from(
        engine, model, mmproj, base_url, None, device, dtype, quantization, adapter, n_ctx
    )
    eng = load_engine(settings)
    try:
        build_mcp(EngineRunner(eng, Metrics()), roots=None, max_bytes=1 << 40).run()
    finally:
        eng.close()
