"""``create_app(settings) -> FastAPI``. Importing builds nothing; the engine loads in the lifespan.

Routers are attached in one place (:func:`attach_routers`); the guards (keys, Host/Origin, limits,
body sizes, error shapes) are app-wide middleware (:mod:`aris.server.guard`), so a router attached
there is covered with no code of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from mcp.server.transport_security import TransportSecuritySettings
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from aris.config import ArisSettings
from aris.context import Models
from aris.engines.base import Engine
from aris.errors import ArisError
from aris.server import audio_routes, embed_routes, guard
from aris.server.audit import Audit
from aris.server.auth import KeyRing
from aris.server.errors import (
    APIError,
    api_error_handler,
    aris_error_handler,
    http_error_handler,
    image_too_large,
    send_error,
    validation_handler,
)
from aris.server.job_routes import router as job_router
from aris.server.jobs import JobManager
from aris.server.limits import KeyLimiter
from aris.server.mcp_tools import build_mcp
from aris.server.metrics import Metrics
from aris.server.routes import api, health
from aris.server.runner import EngineRunner
from aris.server.serving import ChatService
from aris.server.settings import ServerSettings
from aris.server.viewer_routes import attach as attach_viewer

logger = logging.getLogger("aris.server")


def public_model_name(model_id: str) -> str:
    """How a model is named to clients: an HF id as it is, a local file or folder by its name only."""
    looks_like_path = model_id.startswith(("/", "~", ".")) or (os.sep in model_id and Path(model_id).exists())
    if looks_like_path or Path(model_id).suffix.lower() == ".gguf":
        p = Path(model_id)
        # A folder keeps its whole name: "medgemma-1.5-4b-it" has no file suffix to drop.
        return (
            p.stem if p.suffix.lower() in (".gguf", ".safetensors", ".bin", ".pt", ".pth") else p.name
        ) or "model"
    return model_id


class MCPMount:
    """/mcp: the MCP SDK's streamable-HTTP app, built at startup (the guards ran already)."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.server: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            await send_error(
                APIError(503, "starting", "server_error", code="not_ready"), scope, receive, send
            )
            return
        await self.app(scope, receive, send)


def attach_routers(app: FastAPI, mcp: MCPMount) -> None:
    """Every route of the server. Add a router here; the guards cover it without more code."""
    app.include_router(health)
    app.include_router(api)
    app.include_router(job_router)
    audio_routes.attach(app)
    embed_routes.attach(app)
    attach_viewer(app)
    app.router.routes.append(Route("/mcp", endpoint=mcp))
    web = Path(__file__).parent / "web"
    app.mount("/ui", StaticFiles(directory=web, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")


def create_app(
    settings: ServerSettings | None = None,
    *,
    engine: Engine | None = None,
    aris_settings: ArisSettings | None = None,
) -> FastAPI:
    """The Aris server. Pass ``engine`` to serve one already loaded (tests, embedding).

    Raises ConfigError for unsafe settings (an empty key, a public bind without one) or a bad keys
    file: before anything listens.
    """
    settings = settings or ServerSettings()
    settings.check_safe()
    aris_settings = aris_settings or ArisSettings()
    keys = KeyRing.build(
        single_key=settings.api_key.get_secret_value() if settings.api_key is not None else None,
        keys_file=settings.api_keys_file,
        default_max_concurrent=settings.key_max_concurrent,
        default_rate_per_minute=settings.key_rate_per_minute,
    )
    metrics = Metrics()
    limiter = KeyLimiter()
    mcp = MCPMount()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from aris.store import Store

        eng = engine
        if eng is None:
            from aris.engines import load_engine

            eng = await asyncio.to_thread(load_engine, aris_settings)
        runner = EngineRunner(eng, metrics, Models(aris_settings, generator=eng))
        model_name = settings.model_name or public_model_name(eng.model_id)
        store_url = (
            settings.db_url or os.environ.get("ARIS_DB_URL") or f"sqlite:///{aris_settings.home / 'aris.db'}"
        )
        store = await asyncio.to_thread(Store.open, store_url, actor="server")
        app.state.runner = runner
        app.state.engine = eng
        app.state.store = store
        app.state.model_name = model_name
        app.state.audit = Audit(store, model_name, eng.kind)
        app.state.jobs = JobManager(
            runner,
            store,
            aris_settings.home,
            model_name=model_name,
            keep_uploads=settings.keep_uploads,
            max_upload_bytes=settings.max_upload_mb * 1024 * 1024,
            max_new_tokens=settings.max_tokens,
            upload_ttl_s=settings.upload_ttl_s,
            limiter=limiter,
        )
        mcp.server = build_mcp(
            runner,
            roots=[Path(r) for r in settings.mcp_roots],
            max_bytes=settings.max_upload_mb * 1024 * 1024,
            model_name=model_name,
            max_tokens=settings.max_tokens,
            audit=app.state.audit,
        )
        # Host and Origin are checked for every route by guard.HostGuard (with --allowed-host); the SDK's
        # own check knows only the bind address and would refuse the name a reverse proxy forwards.
        mcp_http = mcp.server.streamable_http_app(
            streamable_http_path="/mcp",
            host=settings.host,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        mcp.app = mcp_http.routes[0].app
        app.state.chat = ChatService(
            runner,
            model_name,
            aris_settings.max_new_tokens,
            aliases=tuple(app.state.adapter_names),
            max_tokens=settings.max_tokens,
        )
        for hook in app.state.startup_hooks:
            await hook(app)
        sweeper = asyncio.create_task(app.state.jobs.sweeper())
        logger.info("serving %s engine as %s", eng.kind, model_name)
        try:
            async with mcp.server.session_manager.run():
                yield
        finally:
            # Shutdown: uvicorn has stopped accepting and given open requests their grace period
            # (--shutdown-timeout); what still runs is cancelled, within the same bound again.
            app.state.chat = None
            sweeper.cancel()
            bound = settings.shutdown_timeout_s
            for hook in app.state.shutdown_hooks:
                await hook(app)
            await app.state.jobs.close(bound)
            idle = await runner.shutdown(bound)
            store.close()
            if idle:
                runner.models.close()  # MedSigLIP / MedASR it loaded; the generator is closed below
            if engine is None:
                if idle:
                    eng.close()
                    logger.info("engine closed")
                else:  # closing under a running generation could crash the process mid-write
                    logger.error("engine left open: a generation did not stop within %.0fs", bound)

    app = FastAPI(
        title="Aris",
        version="0.1.0",
        lifespan=lifespan,
        description="MedGemma workbench. Every result is preliminary and needs a clinician's review.",
    )
    app.state.settings = settings
    app.state.aris_settings = aris_settings
    app.state.metrics = metrics
    app.state.keys = keys
    app.state.limiter = limiter
    app.state.chat = None
    app.state.jobs = None
    app.state.started = time.time()
    app.state.adapter_names = [public_model_name(aris_settings.adapter)] if aris_settings.adapter else []
    app.state.startup_hooks = []
    app.state.shutdown_hooks = []
    app.add_exception_handler(APIError, api_error_handler)
    app.add_exception_handler(ArisError, aris_error_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Image.DecompressionBombError, image_too_large)
    attach_routers(app, mcp)
    guard.install(app, settings, metrics, keys, limiter)
    app.state.mcp = mcp
    return app
