"""``aris serve``: the API, task API, MCP endpoint and web UI in one process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from aris.cli.app import app, console
from aris.cli.options import engine_options
from aris.config import ArisSettings
from aris.notice import NOTICE


@app.command("serve")
@engine_options
def serve_cmd(
    host: Annotated[
        str, typer.Option(help="Bind address; anything but loopback requires --api-key.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="ARIS_SERVER_API_KEY", help="Bearer key clients must send."),
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allowed browser origin (repeat). Off by default.")
    ] = None,
    max_upload_mb: Annotated[int, typer.Option(help="Largest upload (HTTP 413 beyond).")] = 2048,
    keep_uploads: Annotated[bool, typer.Option(help="Keep uploads after their job.")] = False,
    mcp_root: Annotated[
        list[Path] | None, typer.Option(help="Folder the MCP tools at /mcp may read (repeat).")
    ] = None,
    *,
    settings: ArisSettings,
) -> None:
    """Serve MedGemma on this machine (127.0.0.1 by default)."""
    import uvicorn

    from aris.server import create_app
    from aris.server.settings import ServerSettings

    server = ServerSettings(
        host=host,
        port=port,
        api_key=api_key,
        cors_origins=cors_origin or [],
        max_upload_mb=max_upload_mb,
        keep_uploads=keep_uploads,
        mcp_roots=[str(p) for p in mcp_root or []],
    )
    server.check_safe()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(f"[bold]Aris[/] on http://{host}:{port}/ui · OpenAI API at /v1 · docs at /docs")
    console.print(f"[yellow]{NOTICE}[/]")
    uvicorn.run(
        create_app(server, aris_settings=settings),
        host=host,
        port=port,
        access_log=False,
        log_level="info",
    )
