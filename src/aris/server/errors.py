"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}``, messages sanitised.

Every error the server answers has this shape, whatever raised it: an :class:`APIError`, an Aris
error, a request that failed validation, an unknown route, a body over the limit, or a bug (500,
with no traceback in the body). Paths (which often hold patient names) never go into an HTTP body:
InputError's public message is its problem without the path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from aris.errors import (
    ArisError,
    BudgetError,
    ConfigError,
    EngineError,
    InputError,
    ModelNotFoundError,
    OutputError,
    PromptError,
)

logger = logging.getLogger("aris.server")

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    421: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_CODES = {
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    421: "misdirected_request",
    429: "rate_limit_exceeded",
}


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        err_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code or _CODES.get(status), param
        self.err_type = err_type or _TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        self.headers = dict(headers or {})


def error_body(message: str, err_type: str, code: str | None = None, param: str | None = None) -> dict:  # type: ignore[type-arg]
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def error_response(e: APIError) -> JSONResponse:
    return JSONResponse(
        error_body(e.message, e.err_type, e.code, e.param), status_code=e.status, headers=e.headers
    )


async def send_error(e: APIError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer from ASGI middleware (before any route ran)."""
    await error_response(e)(scope, receive, send)


def from_aris(e: ArisError) -> APIError:
    if isinstance(e, InputError):
        return APIError(400, e.public_message, code="invalid_input")
    if isinstance(e, BudgetError):
        return APIError(400, str(e), code="context_length_exceeded")
    if isinstance(e, PromptError | ConfigError):
        return APIError(400, str(e))
    if isinstance(e, ModelNotFoundError):
        return APIError(404, "model not available on this server", "not_found_error", code="model_not_found")
    if isinstance(e, OutputError):
        return APIError(422, str(e), code="invalid_output")
    if isinstance(e, EngineError):
        return APIError(502, "the engine failed to generate", "server_error", code="engine_error")
    return APIError(500, "internal error", "server_error")


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc)


async def aris_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ArisError)
    return error_response(from_aris(exc))


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown route, wrong method, a body it could not parse)."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = {404: "no such route", 405: "method not allowed for this route"}.get(
        status, str(exc.detail) or "invalid request"
    )
    return error_response(
        APIError(status, message, code=_CODES.get(status), headers=getattr(exc, "headers", None))
    )


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(x) for x in loc if x != "body")


# The OpenAI-compatible routes answer a malformed request with 400, as OpenAI does; the task API
# with 422 (the request is understood, its content is not acceptable).
OPENAI_PREFIXES = ("/v1/chat/", "/v1/models", "/v1/audio/", "/v1/embeddings", "/v1/completions")


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    """A request that is not what the route takes, naming the field."""
    assert isinstance(exc, RequestValidationError)
    status = 400 if request.url.path.startswith(OPENAI_PREFIXES) else 422
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = field_path(first.get("loc", ()))
    msg = str(first.get("msg", "")).replace("\n", " ")[:300]
    if first.get("type") == "json_invalid":
        return error_response(APIError(400, "the request body is not valid JSON", code="invalid_json"))
    return error_response(
        APIError(status, f"invalid request: {loc} {msg}".strip(), param=loc or None, code="invalid_request")
    )


async def image_too_large(request: Request, exc: Exception) -> JSONResponse:
    """PIL's decompression-bomb guard, wherever an image is opened (a chat image, an upload preview)."""
    return error_response(
        APIError(413, "an image has more pixels than this server accepts", code="image_too_large")
    )
