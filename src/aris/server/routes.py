"""Thin routers: read the request, call the service on ``app.state``, shape the HTTP reply.

Keys, Host/Origin, limits and body sizes are checked before any route runs (:mod:`aris.server.guard`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from aris.server.auth import Principal
from aris.server.errors import APIError
from aris.server.guard import principal_of
from aris.server.protocol import ChatCompletionRequest

T = TypeVar("T")


def require_key(request: Request) -> Principal:
    """The caller, for routes that want it as a dependency. The key itself was checked app-wide
    (:class:`aris.server.guard.AuthGuard`) before any route ran; there is nothing left to check here."""
    return principal_of(request.scope)


health = APIRouter()
api = APIRouter()


@health.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    ready = getattr(request.app.state, "chat", None) is not None
    return JSONResponse({"status": "ready" if ready else "loading"}, status_code=200 if ready else 503)


@api.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


@api.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The served model by name (never a path), and the adapters loaded onto it."""
    state = request.app.state
    data = [
        {
            "id": state.model_name,
            "object": "model",
            "created": int(state.started),
            "owned_by": "aris",
            "parent": None,
        }
    ]
    for name in state.adapter_names:
        data.append(
            {
                "id": name,
                "object": "model",
                "created": int(state.started),
                "owned_by": "aris",
                "parent": state.model_name,
            }
        )
    return {"object": "list", "data": data}


async def until_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """``await work``, cancelled if the client hangs up first (None then). Starlette does this for
    streamed responses; a plain one would otherwise generate to the end for nobody."""
    result: list[T] = []

    async def watch(scope: anyio.CancelScope) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        result.append(await work)
        tg.cancel_scope.cancel()
    return result[0] if result else None


@api.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    chat = request.app.state.chat
    if chat is None:
        raise APIError(503, "the model is still loading", "server_error", code="not_ready")
    prepared = await anyio.to_thread.run_sync(chat.prepare, body)  # images decode off the loop
    # The audit row is written while the request waits for the engine; no reply leaves unaudited.
    audited = asyncio.create_task(
        request.app.state.audit.record(
            principal_of(request.scope), "chat.completion", detail="stream" if body.stream else "complete"
        )
    )
    if body.stream:
        try:
            lines = await until_disconnected(request, chat.stream(prepared))  # queued, then the first piece
        except BaseException:
            audited.cancel()
            raise
        if lines is None:
            await audited
            return JSONResponse({"error": None}, status_code=499)  # nobody reads it: the client left
        try:
            await audited
        except BaseException:
            await lines.aclose()
            raise
        return StreamingResponse(
            lines,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        reply = await until_disconnected(request, chat.complete(prepared))
    finally:
        await audited
    if reply is None:
        return JSONResponse({"error": None}, status_code=499)  # nobody reads it: the client left
    return reply
