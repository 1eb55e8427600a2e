"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}``, messages sanitised.

Paths (which often hold patient names) never go into an HTTP body: InputError's public message is
its problem without the path.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

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


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        err_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.err_type, self.code, self.param = (
            status,
            message,
            err_type,
            code,
            param,
        )


def error_body(message: str, err_type: str, code: str | None = None, param: str | None = None) -> dict:  # type: ignore[type-arg]
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


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
    return JSONResponse(error_body(exc.message, exc.err_type, exc.code, exc.param), status_code=exc.status)


async def aris_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ArisError)
    return await api_error_handler(request, from_aris(exc))
