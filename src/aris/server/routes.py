"""Thin routers: read the request, call the service on ``app.state``, shape the HTTP reply."""

from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aris.server.errors import APIError
from aris.server.protocol import ChatCompletionRequest

_bearer = HTTPBearer(auto_error=False)


def require_key(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Bearer-key check, in constant time, only when the server has a key."""
    key = request.app.state.settings.api_key
    if key is None:
        return
    given = creds.credentials if creds else ""
    if not secrets.compare_digest(given.encode(), key.get_secret_value().encode()):
        raise APIError(401, "missing or invalid API key", "authentication_error", code="invalid_api_key")


health = APIRouter()
api = APIRouter(dependencies=[Depends(require_key)])


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
    data = [
        {
            "id": request.app.state.model_name,
            "object": "model",
            "created": int(request.app.state.started),
            "owned_by": "aris",
            "parent": None,
        }
    ]
    for name in getattr(request.app.state, "adapters", []):
        data.append(
            {
                "id": name,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "aris",
                "parent": request.app.state.model_name,
            }
        )
    return {"object": "list", "data": data}


@api.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    chat = request.app.state.chat
    if chat is None:
        raise APIError(503, "the model is still loading", "server_error", code="not_ready")
    if body.stream:
        lines = await chat.stream(body)
        return StreamingResponse(
            lines,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return await chat.complete(body)
