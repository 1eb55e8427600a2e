"""MedGemma behind any OpenAI-compatible server: vLLM, Ollama, llama-server, llama-cpp-python.

The prompt still comes from :mod:`aris.prompt` (``to_openai_messages``), so the server's own
Gemma 3 template yields the same string the local engines render. Requests go over httpx:

- retries with exponential backoff and jitter on 429, 5xx and connection failures, but only
  until the reply's status line arrives, so streamed text is never sent twice;
- JSON-schema output as ``json_schema`` (vLLM, llama-server, Ollama) with a one-time fallback to
  ``json_object`` + ``schema``, the form llama-cpp-python's server accepts;
- a thought that the server returns apart (``reasoning_content``) is wrapped back into
  ``<unused94>thought\\n...<unused95>``, so the splitter above treats every engine alike.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

import httpx

from aris.engines.base import Capabilities, Engine, Reply
from aris.errors import ConfigError, EngineError
from aris.prompt import THOUGHT_CLOSE, THOUGHT_OPEN, Turn, to_openai_messages
from aris.types import GenerationParams

if TYPE_CHECKING:
    from aris.config import ArisSettings

logger = logging.getLogger(__name__)

SchemaMode = Literal["auto", "json_schema", "json_object"]

DEFAULT_CONTEXT = 131072  # Gemma 3's input context, used when the server does not say
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_WAIT_S = 60.0  # the longest single wait, whatever Retry-After asks for
CONNECT_TIMEOUT_S = 10.0
# vLLM drops special tokens from replies by default, and MedGemma's thought markers are special
# tokens: without this the thought would reach the answer unmarked. Other servers ignore the field.
# skip_special_tokens: vLLM must keep the thought markers. cache_prompt: llama-server keeps the prompt's KV
# for the next request, so N questions about one volume prefill its slices once (vLLM's automatic prefix
# caching does this by itself). Servers ignore the fields they do not know.
DEFAULT_EXTRA_BODY: Mapping[str, Any] = {"skip_special_tokens": False, "cache_prompt": True}
# Servers that keep special tokens may pass the end-of-turn marker through as text.
END_MARKERS = ("<end_of_turn>", "<eos>")
# Where servers report the served context length in their /models listing (vLLM: max_model_len).
CONTEXT_KEYS = ("max_model_len", "context_length", "max_context_length")
# Retried before the reply's status line arrives; a read timeout is not retried (the server may
# still be working on it, and a retry would queue the same long prefill again).
RETRY_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)


class _SchemaRejected(Exception):
    """The server refused the ``response_format`` shape; the caller may try the other one."""


class OpenAIEngine(Engine):
    """Client of an OpenAI-compatible ``/v1`` server.

    Parameters
    ----------
    base_url:
        The server's API root, e.g. ``http://127.0.0.1:8000/v1``.
    model:
        The served model name; ``None`` takes the first id from ``GET {base_url}/models``.
    max_context:
        Used when the server's model listing does not report its context length.
    concurrency:
        Requests in flight at once (``generate_batch`` and the server's slots use it). A batching
        server (vLLM, SGLang) only batches what it is sent, so ``aris serve`` defaults to 64
        (``--concurrency``); a server that runs one request at a time queues the rest.
    schema_mode:
        How JSON-schema output is requested; ``auto`` tries ``json_schema`` and falls back once
        to ``json_object`` + ``schema`` when the server rejects it, then keeps that choice.
    backoff:
        First retry delay in seconds; it doubles each retry, plus up to 50% jitter.
    extra_body:
        Fields added to every chat request (default: ``skip_special_tokens: false`` for vLLM).
    """

    kind = "openai"
    local = False
    remote_tokenizer = True
    settings_used = ("model", "base_url", "timeout", "max_retries")

    @classmethod
    def from_settings(cls, settings: ArisSettings) -> OpenAIEngine:
        if not settings.base_url:
            raise ConfigError("no server: pass --base-url http://HOST:PORT/v1 or set ARIS_BASE_URL")
        return cls(
            settings.base_url,
            settings.model,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            concurrency=settings.concurrency,
        )

    def identity(self) -> dict[str, Any]:
        """The served model as the server describes it; servers behind one name are one model.

        vLLM lists a LoRA adapter as its own model with ``parent`` and ``root``; those are kept, so a
        base model and its fine-tune served side by side never share results.
        """
        listed = next((m for m in self._models() if m.get("id") == self.model_id), {})
        return {
            "engine": self.kind,
            "model": self.model_id,
            "root": listed.get("root"),
            "parent": listed.get("parent"),
        }

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 600,
        max_retries: int = 3,
        max_images: int = 128,
        max_context: int | None = None,
        image_format: str = "PNG",
        concurrency: int = 64,
        schema_mode: SchemaMode = "auto",
        vision: bool = True,
        backoff: float = 0.5,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if schema_mode not in ("auto", "json_schema", "json_object"):
            raise EngineError(f"schema_mode must be auto, json_schema or json_object, not {schema_mode!r}")
        if concurrency < 1:
            raise EngineError(f"concurrency must be at least 1, not {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max(0, max_retries)
        self.image_format = image_format
        self.concurrency = concurrency
        self.schema_mode: SchemaMode = schema_mode
        self.backoff = backoff
        self.timeout = timeout
        self.extra_body = dict(DEFAULT_EXTRA_BODY if extra_body is None else extra_body)
        self._vision = vision
        self._max_images = max_images
        self._max_context = max_context
        self._json_object = schema_mode == "json_object"  # auto flips it after one rejection
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S)),
            limits=httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency),
        )
        self._lock = threading.Lock()
        self._listing: list[dict[str, Any]] | None = None
        self._listing_tried = False
        self._tokenize: tuple[str, str] | Literal[False] | None = None  # None: not probed yet
        if model is None:
            listing = self._models()
            if not listing or not listing[0].get("id"):
                self._client.close()
                raise EngineError(f"the server at {self.base_url} lists no models; pass --model NAME")
            model = str(listing[0]["id"])
            logger.info("server model chosen from its listing (%d listed)", len(listing))
        super().__init__(model)

    # -- capabilities --------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            vision=self._vision,
            max_context=self._served_context() or self._max_context or DEFAULT_CONTEXT,
            max_images=self._max_images,
            json_schema=True,
            concurrent_requests=self.concurrency,
        )

    @property
    def response_format_mode(self) -> Literal["json_schema", "json_object"]:
        """The ``response_format`` shape the next schema request will use."""
        return "json_object" if self._json_object else "json_schema"

    def _served_context(self) -> int | None:
        """The context length the server reports for this model, asked once."""
        with self._lock:
            if not self._listing_tried:
                try:
                    self._models()
                except EngineError:
                    logger.info("model listing unavailable; using the configured context")
                self._listing_tried = True
        for entry in self._listing or []:
            if entry.get("id") == self.model_id:
                for key in CONTEXT_KEYS:
                    value = entry.get(key)
                    if isinstance(value, int) and value > 0:
                        return value
        return None

    def _models(self) -> list[dict[str, Any]]:
        resp = self._send("GET", "/models")
        try:
            data = resp.json().get("data")
        except (ValueError, AttributeError):
            data = None
        if not isinstance(data, list):
            raise EngineError(f"{self.base_url}/models did not answer an OpenAI model list")
        self._listing = [d for d in data if isinstance(d, dict)]
        self._listing_tried = True
        return self._listing

    # -- generation ----------------------------------------------------------------------

    def stream(self, turns: list[Turn], params: GenerationParams) -> Reply:
        """The reply's text as the server streams it; closing it closes the response.

        When the stream ends, ``.usage`` holds the server's own token counts (vLLM, Ollama and OpenAI
        send them when asked with ``stream_options``); a server that sends none (llama-cpp-python) gets
        its completion counted by the token events it streamed, one a token.
        """
        usage: dict[str, int] = {}
        return Reply(self._stream(turns, params, usage), usage)

    def _stream(
        self, turns: list[Turn], params: GenerationParams, usage: dict[str, int]
    ) -> Generator[str, None, None]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": to_openai_messages(turns, image_format=self.image_format),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            **self.extra_body,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        resp = self._open_chat(body, params.json_schema)
        try:
            yield from _reply_text(resp, usage)
        finally:
            resp.close()

    def generate_batch(self, prompts: list[list[Turn]], params: GenerationParams) -> list[str]:
        """Replies in order, ``concurrency`` requests in flight: servers batch them together."""
        if len(prompts) <= 1:
            return super().generate_batch(prompts, params)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(lambda turns: "".join(self.stream(turns, params)), prompts))

    def _open_chat(self, body: dict[str, Any], schema: dict[str, Any] | None) -> httpx.Response:
        if schema is None:
            return self._send("POST", "/chat/completions", body, stream=True)
        json_object = self._json_object
        body["response_format"] = _response_format(schema, json_object=json_object)
        try:
            return self._send(
                "POST",
                "/chat/completions",
                body,
                stream=True,
                schema_probe=self.schema_mode == "auto" and not json_object,
            )
        except _SchemaRejected:
            logger.info("server refused response_format json_schema; using json_object with schema")
            self._json_object = True
            body["response_format"] = _response_format(schema, json_object=True)
            return self._send("POST", "/chat/completions", body, stream=True)

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        stream: bool = False,
        schema_probe: bool = False,
    ) -> httpx.Response:
        """One request with retries; returns a response with a success status.

        With ``stream`` the body is left unread for the caller, who must close the response.
        With ``schema_probe`` an error that names ``response_format`` raises
        :class:`_SchemaRejected` at once, before any retry.
        """
        url = self.base_url + path
        attempt = 0
        while True:
            try:
                request = self._client.build_request(method, url, json=body)
                resp = self._client.send(request, stream=stream)
            except RETRY_ERRORS as e:
                if attempt >= self.max_retries:
                    raise EngineError(
                        f"cannot reach the OpenAI-compatible server at {self.base_url} "
                        f"({type(e).__name__} after {attempt + 1} attempts); check that the server is "
                        "running and that --base-url is right (it usually ends in /v1)"
                    ) from e
                self._wait(attempt, None, f"{type(e).__name__}")
                attempt += 1
                continue
            except httpx.TimeoutException as e:
                raise EngineError(
                    f"the server at {self.base_url} sent nothing for {self.timeout:g} s "
                    f"({type(e).__name__}); raise --timeout or check the server's load"
                ) from e
            except httpx.HTTPError as e:
                raise EngineError(f"request to {self.base_url} failed: {type(e).__name__}: {e}") from e
            if resp.status_code < 400:
                return resp
            try:
                resp.read()
            except httpx.HTTPError:
                pass
            finally:
                resp.close()
            message = _error_message(resp)
            if schema_probe and _names_response_format(message):
                raise _SchemaRejected(message)
            if resp.status_code in RETRY_STATUSES and attempt < self.max_retries:
                self._wait(attempt, resp.headers.get("retry-after"), f"HTTP {resp.status_code}")
                attempt += 1
                continue
            raise EngineError(
                f"{self.base_url}{path}: HTTP {resp.status_code} after {attempt + 1} "
                f"attempt{'s' if attempt else ''}{_hint(resp.status_code)}: {message}"
            )

    def _wait(self, attempt: int, retry_after: str | None, why: str) -> None:
        """Sleep before retry ``attempt + 1``: the server's Retry-After, else backoff with jitter."""
        delay = _parse_retry_after(retry_after)
        if delay is None:
            delay = self.backoff * 2**attempt * random.uniform(1.0, 1.5)
        delay = min(max(delay, 0.0), MAX_WAIT_S)
        logger.warning("%s from server; retry %d/%d in %.2f s", why, attempt + 1, self.max_retries, delay)
        time.sleep(delay)

    # -- tokens --------------------------------------------------------------------------

    def count_text_tokens(self, text: str) -> int:
        """The server's own count where it offers a tokenize route, else the base estimate.

        llama-cpp-python has ``/extras/tokenize/count`` and vLLM ``/tokenize``, both beside
        ``/v1``; the route that works is remembered, and a server with neither is asked once.
        """
        if self._tokenize is None:
            self._tokenize = self._probe_tokenize(text)
        if self._tokenize:
            try:
                return self._count_with(self._tokenize, text)
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                logger.debug("server tokenize failed; using the estimate")
        return super().count_text_tokens(text)

    def _probe_tokenize(self, text: str) -> tuple[str, str] | Literal[False]:
        root = self.base_url.removesuffix("/v1")
        for route in ((root + "/extras/tokenize/count", "input"), (root + "/tokenize", "prompt")):
            try:
                self._count_with(route, text)
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                continue
            return route
        return False

    def _count_with(self, route: tuple[str, str], text: str) -> int:
        url, field = route
        body: dict[str, Any] = {"model": self.model_id, field: text}
        if field == "prompt":
            body["add_special_tokens"] = False  # the rendered prompt already holds <bos>
        resp = self._client.post(url, json=body, timeout=CONNECT_TIMEOUT_S)
        resp.raise_for_status()
        data = resp.json()
        count = data["count"] if "count" in data else len(data["tokens"])
        return int(count)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIEngine:
        return self


def _response_format(schema: dict[str, Any], *, json_object: bool) -> dict[str, Any]:
    if json_object:
        return {"type": "json_object", "schema": schema}
    title = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "response"))[:64]
    return {"type": "json_schema", "json_schema": {"name": title, "schema": schema, "strict": True}}


def _names_response_format(message: str) -> bool:
    low = message.lower()
    return "response_format" in low or "json_schema" in low


def _reply_text(resp: httpx.Response, usage: dict[str, int] | None = None) -> Iterator[str]:
    """Text chunks of a streamed chat completion, a thought sent apart re-wrapped in its markers.

    ``usage`` receives the server's ``prompt_tokens``/``completion_tokens`` when it sends them, else the
    number of token events as ``completion_tokens``.
    """
    usage = usage if usage is not None else {}
    events_seen = 0
    finish: str | None = None
    if resp.headers.get("content-type", "").startswith("application/json"):
        # A server that ignored ``stream``: one whole completion.
        resp.read()
        events: Iterator[dict[str, Any]] = iter([_whole_as_delta(resp)])
    else:
        events = _sse_events(resp)
    in_thought = False
    for event in events:
        reported = event.get("usage")
        if isinstance(reported, dict):
            usage.update(
                {k: int(v) for k, v in reported.items() if k.endswith("_tokens") and isinstance(v, int)}
            )
        choices = event.get("choices") or []
        if not choices:
            continue  # e.g. a usage-only chunk
        finish = choices[0].get("finish_reason") or finish
        delta = choices[0].get("delta") or {}
        if delta.get("content") is not None or delta.get("reasoning_content") or delta.get("reasoning"):
            events_seen += 1
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            if not in_thought:
                yield THOUGHT_OPEN + "thought\n"
                in_thought = True
            yield reasoning
        content = delta.get("content")
        if content:
            if in_thought:
                yield THOUGHT_CLOSE
                in_thought = False
            for marker in END_MARKERS:
                content = content.replace(marker, "")
            if content:
                yield content
    if in_thought:
        yield THOUGHT_CLOSE
    usage.setdefault("completion_tokens", events_seen)
    if finish is not None:
        # "length": the server ran out of max_tokens or of its own context (llama-server's slot,
        # Ollama's num_ctx), possibly well short of max_tokens: a cut reply whatever the count.
        usage["cut"] = int(finish == "length")


def _whole_as_delta(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
        choice = data["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise EngineError("the server answered a streamed request with an unreadable completion") from e
    return {
        "choices": [{"delta": message, "finish_reason": choice.get("finish_reason")}],
        "usage": data.get("usage"),
    }


def _sse_events(resp: httpx.Response) -> Iterator[dict[str, Any]]:
    """JSON payloads of the server-sent events up to ``[DONE]``; an ``error`` event raises.

    A stream that ends with neither ``[DONE]`` nor a choice's ``finish_reason`` was cut (a proxy or
    server gone mid-reply, closing cleanly): its text is part of a reply, and raises.
    """
    finished = False
    try:
        for data in _sse_data(resp.iter_lines()):
            if data.strip() == "[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError as e:
                raise EngineError("the server sent a stream event that is not JSON") from e
            if not isinstance(event, dict):
                continue
            if event.get("error"):
                raise EngineError(f"the server stopped the reply: {_message_of(event)}")
            choices = event.get("choices")
            if isinstance(choices, list) and any(
                isinstance(c, dict) and c.get("finish_reason") for c in choices
            ):
                finished = True
            yield event
    except httpx.TimeoutException as e:
        raise EngineError("the server stopped sending mid-reply (read timeout); raise --timeout") from e
    except httpx.TransportError as e:
        raise EngineError(f"the connection broke mid-reply ({type(e).__name__}); not retried") from e
    if not finished:
        raise EngineError("the server's stream ended before the reply did (no [DONE], no finish_reason)")


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data`` of each event, per the SSE format: fields until a blank line, comments skipped."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


def _error_message(resp: httpx.Response) -> str:
    """The server's own words: OpenAI ``{"error": {"message"}}``, Ollama, FastAPI or plain text."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:1000] or resp.reason_phrase
    return _message_of(data) if isinstance(data, dict) else str(data)[:1000]


def _message_of(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:1000]
    for value in (error, data.get("message"), data.get("detail")):
        if value:
            return str(value)[:1000]
    return json.dumps(data)[:1000]


def _hint(status: int) -> str:
    if status in (401, 403):
        return " (the server refused the key: pass --api-key or set ARIS_API_KEY)"
    if status == 404:
        return " (check --base-url, which usually ends in /v1, and --model)"
    if status == 429:
        return " (the server is overloaded; lower the concurrency or retry later)"
    return ""


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delay-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()
