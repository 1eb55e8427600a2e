"""App-wide guards, as plain ASGI middleware so that every route is covered, including routers and
mounted apps attached later (/mcp, audio, search), with no code in the route itself.

From the outside in (see :func:`install`):

1. :class:`AccessLog` -- metrics, an access log of route templates only (no query strings, file
   names or prompt text), and any exception a route let escape turned into an OpenAI-shaped 500.
2. :class:`HostGuard` -- DNS rebinding: the Host header must name this server (421 otherwise), and a
   browser's Origin must be this server or a configured CORS origin (403 otherwise).
3. CORS (Starlette's), only when origins are configured.
4. :class:`AuthGuard` -- the bearer key, parsed one way for every route; 401 with ``WWW-Authenticate``;
   a key's allow-list for work routes (403).
5. :class:`KeyLimits` -- per-key rate and work in flight (429 with ``Retry-After``).
6. :class:`BodyLimit` -- body size, counted as bytes arrive (chunked bodies too), 413 at the limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aris.server.auth import ANONYMOUS, KeyRing, Principal, parse_bearer
from aris.server.errors import APIError, send_error
from aris.server.limits import KeyLimiter, TooMany
from aris.server.metrics import Metrics
from aris.server.settings import ServerSettings, is_loopback_host

logger = logging.getLogger("aris.server")
access_logger = logging.getLogger("aris.server.access")

# Routes that take file uploads get --max-upload-mb; every other body gets --max-request-mb.
# A router that takes uploads adds its path here.
UPLOAD_PREFIXES: list[str] = ["/v1/uploads"]
# Reachable without a key: health probes, the API description and the static web UI (which asks
# for the key and sends it with every API call).
PUBLIC_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
PUBLIC_PREFIXES = ("/ui/",)
PRINCIPAL = "aris.principal"  # the scope key AuthGuard sets: an auth.Principal


def principal_of(scope: Scope) -> Principal:
    """The caller of this request (set by :class:`AuthGuard`)."""
    who = scope.get(PRINCIPAL)
    if not isinstance(who, Principal):  # a public route: nobody in particular
        return Principal(ANONYMOUS)
    return who


def _template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    return "/ui" if scope["path"].startswith("/ui") else "unmatched"


class AccessLog:
    def __init__(self, app: ASGIApp, settings: ServerSettings, metrics: Metrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"status": 500, "started": False}
        t0 = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as e:
            # The type only: an exception's message may hold a path or prompt text.
            logger.error("internal error on %s: %s", _template(scope), type(e).__name__)
            logger.debug("traceback", exc_info=True)
            if not state["started"]:
                await send_error(
                    APIError(500, "internal error", "server_error", code="internal_error"),
                    scope,
                    receive,
                    send,
                )
                state["status"] = 500
        finally:
            self._log(scope, int(state["status"]), time.perf_counter() - t0)

    def _log(self, scope: Scope, status: int, seconds: float) -> None:
        template = _template(scope)
        self.metrics.requests.labels(template, str(status)).inc()
        self.metrics.latency.labels(template).observe(seconds)
        shown = scope["path"] if self.settings.log_phi else template
        who = principal_of(scope).actor if PRINCIPAL in scope else "-"
        access_logger.info("%s %s %d %.1fms %s", scope["method"], shown, status, seconds * 1000, who)


def _host_name(value: str) -> str | None:
    """The name part of a Host header (``name``, ``name:port``, ``[v6]:port``), lowercased."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else None
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value or None


class HostGuard:
    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.names = {h.strip().lower() for h in settings.allowed_hosts if h.strip()}
        wildcard = settings.host in ("0.0.0.0", "::", "")
        if not wildcard and not settings.is_loopback():
            self.names.add(settings.host.strip("[]").lower())
        # Bound to every interface with no names given: any Host is accepted (a key is required there).
        self.any_host = wildcard and not self.names
        self.cors = {o.rstrip("/") for o in settings.cors_origins}

    def host_ok(self, host: str) -> bool:
        name = _host_name(host)
        if name is None:
            return False
        return self.any_host or is_loopback_host(name) or name in self.names

    def origin_ok(self, origin: str, host: str | None) -> bool:
        origin = origin.strip().rstrip("/")
        if origin in self.cors:
            return True
        if origin == "null" or host is None:
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_host = headers.get(b"host")
        host = raw_host.decode("latin-1") if raw_host is not None else None
        if host is not None and not self.host_ok(host):
            await send_error(
                APIError(421, "this server does not answer to that Host name (see --allowed-host)"),
                scope,
                receive,
                send,
            )
            return
        origin = headers.get(b"origin")
        if origin is not None and not self.origin_ok(origin.decode("latin-1"), host):
            await send_error(
                APIError(
                    403, "cross-origin requests are refused (see --cors-origin)", code="origin_not_allowed"
                ),
                scope,
                receive,
                send,
            )
            return
        await self.app(scope, receive, send)


class AuthGuard:
    def __init__(self, app: ASGIApp, keys: KeyRing, anonymous: Principal) -> None:
        self.app, self.keys, self.anonymous = app, keys, anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        who: Principal | None = self.anonymous
        if self.keys:
            token = parse_bearer(dict(scope["headers"]).get(b"authorization"))
            who = self.keys.identify(token) if token is not None else None
            if who is None:
                challenge = 'Bearer realm="aris"' + (', error="invalid_token"' if token is not None else "")
                await send_error(
                    APIError(401, "missing or invalid API key", headers={"WWW-Authenticate": challenge}),
                    scope,
                    receive,
                    send,
                )
                return
        assert who is not None
        scope[PRINCIPAL] = who
        if scope["method"] == "POST" and not who.may_post(path):
            await send_error(APIError(403, "this API key may not use this route"), scope, receive, send)
            return
        await self.app(scope, receive, send)


class KeyLimits:
    def __init__(self, app: ASGIApp, limiter: KeyLimiter) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        who = scope.get(PRINCIPAL)
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not isinstance(who, Principal)
            or (who.max_concurrent is None and who.rate_per_minute is None)
        ):
            await self.app(scope, receive, send)
            return
        try:
            release = self.limiter.admit(who)
        except TooMany as e:
            await send_error(
                APIError(429, str(e), headers={"Retry-After": str(e.retry_after)}), scope, receive, send
            )
            return
        try:
            await self.app(scope, receive, send)
        finally:
            release()


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a body passes its limit; the route never sees more of it."""


class BodyLimit:
    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app, self.settings = app, settings

    def limit_mb(self, path: str) -> int:
        if path.startswith(tuple(UPLOAD_PREFIXES)):
            return self.settings.max_upload_mb
        return self.settings.max_request_mb

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit_mb = self.limit_mb(scope["path"])
        limit = limit_mb * 1024 * 1024
        too_large = APIError(
            413,
            f"request body over the {limit_mb} MB limit",
            code="payload_too_large",
            headers={"Connection": "close"},  # stop reading: the rest of the body is not wanted
        )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await send_error(APIError(400, "invalid Content-Length"), scope, receive, send)
                return
            if int(length) > limit:
                await send_error(too_large, scope, receive, send)
                return
        state: dict[str, Any] = {"received": 0, "started": False, "answered": False}

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    if not state["started"]:
                        state["answered"] = True
                        await send_error(too_large, scope, receive, send)
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if state["answered"]:  # the 413 went out; whatever the route makes of the error is dropped
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not state["answered"]:
                raise
            # The route turned the cut-off body into another error; the 413 is the answer.


def install(app: Any, settings: ServerSettings, metrics: Metrics, keys: KeyRing, limiter: KeyLimiter) -> None:
    """Add the guards to a FastAPI app, outermost first (Starlette adds each new one outside)."""
    from fastapi.middleware.cors import CORSMiddleware

    anonymous = Principal(ANONYMOUS, None, settings.key_max_concurrent, settings.key_rate_per_minute)
    layers: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (AccessLog, {"settings": settings, "metrics": metrics}),
        (HostGuard, {"settings": settings}),
    ]
    if settings.cors_origins:
        layers.append(
            (
                CORSMiddleware,
                {"allow_origins": settings.cors_origins, "allow_methods": ["*"], "allow_headers": ["*"]},
            )
        )
    layers += [
        (AuthGuard, {"keys": keys, "anonymous": anonymous}),
        (KeyLimits, {"limiter": limiter}),
        (BodyLimit, {"settings": settings}),
    ]
    for cls, kwargs in reversed(layers):
        app.add_middleware(cls, **kwargs)
