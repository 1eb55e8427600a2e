"""``create_app(settings) -> FastAPI``. Importing builds nothing; the engine loads in the lifespan."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aris.config import ArisSettings
from aris.engines.base import Engine
from aris.errors import ArisError
from aris.server import audio_routes, embed_routes
from aris.server.errors import APIError, api_error_handler, aris_error_handler, error_body
from aris.server.job_routes import router as job_router
from aris.server.jobs import JobManager
from aris.server.mcp_tools import build_mcp
from aris.server.metrics import Metrics
from aris.server.routes import api, health
from aris.server.runner import EngineRunner
from aris.server.serving import ChatService
from aris.server.settings import ServerSettings

logger = logging.getLogger("aris.server")
access_logger = logging.getLogger("aris.server.access")

UPLOAD_PREFIXES = ("/v1/jobs", "/v1/uploads", "/api/")


class GuardMiddleware:
    """Body-size limits (413) and an access log with route templates only: no query strings,
    file names, identifiers or prompt text reach the log."""

    def __init__(self, app: ASGIApp, settings: ServerSettings, metrics: Metrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit_mb = (
            self.settings.max_upload_mb if path.startswith(UPLOAD_PREFIXES) else self.settings.max_request_mb
        )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit_mb * 1024 * 1024:
            resp = JSONResponse(
                error_body(
                    f"request body over the {limit_mb} MB limit", "invalid_request_error", "payload_too_large"
                ),
                status_code=413,
            )
            await resp(scope, receive, send)
            self._log(scope, 413, 0.0)
            return
        status = {"code": 500}
        t0 = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._log(scope, status["code"], time.perf_counter() - t0)

    def _log(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or (
            "/static" if scope["path"].startswith("/ui") else "unmatched"
        )
        self.metrics.requests.labels(template, str(status)).inc()
        self.metrics.latency.labels(template).observe(seconds)
        if self.settings.log_phi:
            access_logger.info("%s %s %d %.1fms", scope["method"], scope["path"], status, seconds * 1000)
        else:
            access_logger.info("%s %s %d %.1fms", scope["method"], template, status, seconds * 1000)


class KeyGuard:
    """The MCP endpoint behind the same bearer-key check as the API (its app is built at startup)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.app: ASGIApp | None = None
        self.target: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self.settings.api_key
        if key is not None:
            given = dict(scope["headers"]).get(b"authorization", b"").removeprefix(b"Bearer ")
            if not secrets.compare_digest(given, key.get_secret_value().encode()):
                resp = JSONResponse(
                    error_body("missing or invalid API key", "authentication_error", "invalid_api_key"),
                    status_code=401,
                )
                await resp(scope, receive, send)
                return
        if self.app is None:
            await JSONResponse(error_body("starting", "server_error", "not_ready"), status_code=503)(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)


def create_app(
    settings: ServerSettings | None = None,
    *,
    engine: Engine | None = None,
    aris_settings: ArisSettings | None = None,
) -> FastAPI:
    """The Aris server. Pass ``engine`` to serve one already loaded (tests, embedding)."""
    settings = settings or ServerSettings()
    aris_settings = aris_settings or ArisSettings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        eng = engine
        if eng is None:
            from aris.engines import load_engine

            eng = await asyncio.to_thread(load_engine, aris_settings)
        runner = EngineRunner(eng, metrics)
        app.state.runner = runner
        app.state.engine = eng
        app.state.model_name = settings.model_name or eng.model_id
        app.state.chat = ChatService(runner, app.state.model_name, aris_settings.max_new_tokens)
        app.state.jobs = await asyncio.to_thread(
            JobManager,
            runner,
            aris_settings.home,
            keep_uploads=settings.keep_uploads,
            max_upload_bytes=settings.max_upload_mb * 1024 * 1024,
            store_url=settings.db_url
            or os.environ.get("ARIS_DB_URL")
            or f"sqlite:///{aris_settings.home / 'aris.db'}",
        )
        mcp_guard.target = build_mcp(
            runner,
            roots=[Path(r) for r in settings.mcp_roots],
            max_bytes=settings.max_upload_mb * 1024 * 1024,
        )
        mcp_http = mcp_guard.target.streamable_http_app(streamable_http_path="/mcp", host=settings.host)
        mcp_guard.app = mcp_http.routes[0].app  # type: ignore[attr-defined]
        for hook in app.state.startup_hooks:
            await hook(app)
        logger.info("serving %s engine", eng.kind)
        try:
            async with mcp_guard.target.session_manager.run():
                yield
        finally:
            for hook in app.state.shutdown_hooks:
                await hook(app)
            app.state.jobs.close()
            if engine is None:
                eng.close()

    app = FastAPI(
        title="Aris",
        version="0.1.0",
        lifespan=lifespan,
        description="MedGemma workbench. Every result is preliminary and needs a clinician's review.",
    )
    app.state.settings = settings
    app.state.aris_settings = aris_settings
    app.state.metrics = metrics
    app.state.chat = None
    app.state.jobs = None
    app.state.started = time.time()
    app.state.adapters = [aris_settings.adapter] if aris_settings.adapter else []
    app.state.startup_hooks = []
    app.state.shutdown_hooks = []
    app.add_exception_handler(APIError, api_error_handler)
    app.add_exception_handler(ArisError, aris_error_handler)

    async def validation_handler(request: Any, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return JSONResponse(
            error_body(
                f"invalid request: {loc} {first.get('msg', '')}".strip(),
                "invalid_request_error",
                param=loc or None,
            ),
            status_code=400,
        )

    app.add_exception_handler(RequestValidationError, validation_handler)
    app.include_router(health)
    app.include_router(api)
    app.include_router(job_router)
    audio_routes.attach(app)
    embed_routes.attach(app)
    mcp_guard = KeyGuard(settings)
    app.router.routes.append(Route("/mcp", endpoint=mcp_guard))
    web = Path(__file__).parent / "web"
    app.mount("/ui", StaticFiles(directory=web, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(GuardMiddleware, settings=settings, metrics=metrics)
    return app
