"""``aris serve``: the API, task API, MCP endpoint and web UI in one process; ``aris keygen``: a named
API key for it."""

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
        str, typer.Option(help="Bind address; anything but loopback requires --api-key or --api-keys-file.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="ARIS_SERVER_API_KEY", help="One bearer key clients must send."),
    ] = None,
    api_keys_file: Annotated[
        Path | None,
        typer.Option(
            "--api-keys-file",
            envvar="ARIS_SERVER_API_KEYS_FILE",
            help="TOML file of named keys (digests only), made by `aris keygen`.",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(help="Host name clients reach the server by, e.g. behind a reverse proxy (repeat)."),
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allowed browser origin (repeat). Off by default.")
    ] = None,
    max_upload_mb: Annotated[int, typer.Option(help="Largest upload (HTTP 413 beyond).")] = 2048,
    max_request_mb: Annotated[int, typer.Option(help="Largest JSON request (HTTP 413 beyond).")] = 64,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Most tokens any request or job may generate.")
    ] = 8192,
    key_max_concurrent: Annotated[
        int | None, typer.Option(help="Per-key limit on requests and jobs in flight (429 beyond).")
    ] = None,
    key_rate_per_minute: Annotated[
        int | None, typer.Option(help="Per-key limit on work requests a minute (429 beyond).")
    ] = None,
    shutdown_timeout: Annotated[
        float,
        typer.Option(help="Seconds in-flight work may take to finish on SIGTERM before it is cancelled."),
    ] = 10.0,
    keep_uploads: Annotated[bool, typer.Option(help="Keep uploads after their job.")] = False,
    mcp_root: Annotated[
        list[Path] | None, typer.Option(help="Folder the MCP tools at /mcp may read (repeat).")
    ] = None,
    *,
    settings: ArisSettings,
) -> None:
    """Serve MedGemma on this machine (127.0.0.1 by default)."""
    import uvicorn
    from pydantic import SecretStr

    from aris.server import create_app
    from aris.server.settings import ServerSettings

    server = ServerSettings(
        host=host,
        port=port,
        api_key=SecretStr(api_key) if api_key is not None else None,
        api_keys_file=api_keys_file,
        allowed_hosts=allowed_host or [],
        cors_origins=cors_origin or [],
        max_upload_mb=max_upload_mb,
        max_request_mb=max_request_mb,
        max_tokens=max_tokens,
        key_max_concurrent=key_max_concurrent,
        key_rate_per_minute=key_rate_per_minute,
        shutdown_timeout_s=shutdown_timeout,
        keep_uploads=keep_uploads,
        mcp_roots=[str(p) for p in mcp_root or []],
    )
    application = create_app(server, aris_settings=settings)  # refuses unsafe settings before listening
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(f"[bold]Aris[/] on http://{host}:{port}/ui · OpenAI API at /v1 · docs at /docs")
    console.print(f"[yellow]{NOTICE}[/]")
    uvicorn.run(
        application,
        host=host,
        port=port,
        access_log=False,
        log_level="info",
        # SIGTERM: stop accepting, let open requests finish this long, then cancel them; the app's
        # own shutdown (cancel jobs, remove uploads, close the engine) has the same bound again.
        timeout_graceful_shutdown=max(1, round(shutdown_timeout)),
    )


@app.command("keygen")
def keygen_cmd(
    name: Annotated[str, typer.Argument(help="The key's name, as the audit trail will show it.")],
    keys_file: Annotated[
        Path, typer.Option("--keys-file", help="The TOML keys file to add it to (created, mode 0600).")
    ] = Path("aris-keys.toml"),
    task: Annotated[
        list[str] | None,
        typer.Option(help="Allow only this task (repeat); 'chat' allows /v1/chat/completions. Default: all."),
    ] = None,
    max_concurrent: Annotated[int | None, typer.Option(min=1, help="Requests and jobs in flight.")] = None,
    rate_per_minute: Annotated[int | None, typer.Option(min=1, help="Work requests a minute.")] = None,
) -> None:
    """Make a named API key for `aris serve --api-keys-file`. The key is shown once; the file keeps its digest."""
    from aris.errors import ConfigError
    from aris.server.auth import ROUTE_SCOPES, append_key, new_key_entry
    from aris.tasks import TASKS

    known = {*TASKS.names(), *ROUTE_SCOPES.values()}
    unknown = sorted(set(task or []) - known)
    if unknown:
        raise ConfigError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    key, entry = new_key_entry(
        name, tasks=task, max_concurrent=max_concurrent, rate_per_minute=rate_per_minute
    )
    append_key(keys_file, name, entry)
    console.print(f"Added key [bold]{name}[/] to {keys_file}. Give it to its holder now; it is not stored:")
    typer.echo(key)
