"""Chat completions: OpenAI request -> Aris messages -> :func:`aris.generate.generate` -> OpenAI response
or SSE stream.

The one generation path serves chat too: prompt building, the budget check, thought splitting and
closing the engine's stream when the client goes away are :mod:`aris.generate`'s, as for every task.
The logic returns plain dicts or an async iterator of SSE lines; routes turn them into HTTP.
Thought never enters ``content``: it goes to ``reasoning_content`` when asked for, else nowhere.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from aris.context import Cancelled
from aris.generate import generate, was_cut
from aris.prompt import Turn, build_turns, count_images, render
from aris.result import Result
from aris.server.errors import APIError, error_body, from_aris
from aris.server.protocol import ChatCompletionRequest
from aris.server.runner import EngineRunner, Returned
from aris.types import GenerationParams, ImagePart, Message, Part, TextPart

MAX_IMAGE_PIXELS = 64_000_000  # a decompression-bomb limit for inline images


def decode_image(url: str) -> Image.Image:
    """A ``data:`` URI to an RGB image. Remote URLs are refused: patient data stays on this machine."""
    if not url.startswith("data:"):
        raise APIError(
            400, "only data: URIs are accepted for images (remote URLs are never fetched)", param="messages"
        )
    try:
        header, _, payload = url.partition(",")
        raw = base64.b64decode(payload, validate=True) if ";base64" in header else payload.encode()
        img = Image.open(io.BytesIO(raw))
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise APIError(
                413,
                f"an image of {img.width}x{img.height} pixels is over the limit of {MAX_IMAGE_PIXELS}",
                param="messages",
                code="image_too_large",
            )
        return img.convert("RGB")
    except APIError:
        raise
    except Image.DecompressionBombError as e:
        raise APIError(
            413, "an image has more pixels than this server accepts", param="messages", code="image_too_large"
        ) from e
    except (binascii.Error, OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise APIError(400, f"an image could not be decoded: {type(e).__name__}", param="messages") from e


def to_messages(req: ChatCompletionRequest) -> list[Message]:
    out: list[Message] = []
    for m in req.messages:
        role = "system" if m.role in ("system", "developer") else m.role
        parts: list[Part] = []
        if isinstance(m.content, str):
            parts.append(TextPart(m.content))
        elif m.content:
            for c in m.content:
                if c.type == "image_url" and c.image_url is not None:
                    parts.append(ImagePart(decode_image(c.image_url.url)))
                elif c.text is not None:
                    parts.append(TextPart(c.text))
        out.append(Message(role, parts))  # type: ignore[arg-type]
    return out


def to_params(req: ChatCompletionRequest, default_max: int) -> GenerationParams:
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    return GenerationParams(
        max_new_tokens=req.max_completion_tokens or req.max_tokens or default_max,
        temperature=req.temperature or 0.0,
        top_p=req.top_p or 1.0,
        seed=req.seed,
        stop=stop,
        json_schema=req.json_schema(),
        think=req.think,
    )


@dataclass
class Prepared:
    """A checked request: what generate() needs, and what ``usage`` is counted from if asked."""

    messages: list[Message]
    params: GenerationParams
    turns: list[Turn]
    include_usage: bool = True


class ChatService:
    def __init__(
        self,
        runner: EngineRunner,
        model_name: str,
        default_max_tokens: int = 1024,
        *,
        aliases: tuple[str, ...] = (),
        max_tokens: int = 8192,
    ) -> None:
        self.runner = runner
        self.model_name = model_name
        self.names = {model_name, *aliases}
        self.default_max_tokens = min(default_max_tokens, max_tokens)
        self.max_tokens = max_tokens

    def prepare(self, req: ChatCompletionRequest) -> Prepared:
        """Everything that can be refused is refused here, before the engine is involved."""
        if req.model is not None and req.model not in self.names:
            raise APIError(
                404,
                f"model {req.model!r} is not served here (see /v1/models)",
                param="model",
                code="model_not_found",
            )
        refused = req.unsupported()
        if refused is not None:
            raise APIError(400, refused[1], param=refused[0], code="unsupported_parameter")
        asked = req.max_completion_tokens or req.max_tokens
        if asked is not None and asked > self.max_tokens:
            raise APIError(
                400, f"max_tokens is limited to {self.max_tokens} on this server", param="max_tokens"
            )
        params = to_params(req, self.default_max_tokens)
        messages = to_messages(req)
        turns = build_turns(messages, think=params.think)
        engine = self.runner.engine
        engine.check_budget(turns, params)
        # A stream carries usage only when the client asks (OpenAI's stream_options.include_usage):
        # counting a prompt is a round trip to a remote engine, queued behind its generations.
        include_usage = not req.stream or bool((req.stream_options or {}).get("include_usage"))
        return Prepared(messages, params, turns, include_usage)

    def _work(self, p: Prepared, stream: bool) -> Callable[[Callable[[Any], None], threading.Event], Result]:
        engine = self.runner.engine

        def work(emit: Callable[[Any], None], cancel: threading.Event) -> Result:
            def on_piece(kind: str, text: str) -> None:
                if cancel.is_set():
                    raise Cancelled
                if stream:
                    emit((kind, text))

            return generate(engine, p.messages, p.params, on_piece=on_piece, task="chat")

        return work

    def _usage(self, p: Prepared, result: Result) -> dict[str, int]:
        completion = int(result.usage.get("completion_tokens", 0))
        # The engine's own count of the prompt when it reports one (a remote server may), else counted now.
        if "prompt_tokens" in result.usage:
            prompt = int(result.usage["prompt_tokens"])
        else:
            engine = self.runner.engine
            prompt = (
                engine.count_text_tokens(render(p.turns))
                + count_images(p.turns) * engine.capabilities.image_tokens
            )
        self.runner.metrics.tokens.labels("prompt").inc(prompt)
        self.runner.metrics.tokens.labels("completion").inc(completion)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @staticmethod
    def _finish_reason(p: Prepared, result: Result) -> str:
        return "length" if was_cut(result.usage, p.params.max_new_tokens) else "stop"

    async def complete(self, p: Prepared) -> dict[str, Any]:
        result: Result | None = None
        async with contextlib.aclosing(self.runner.call(self._work(p, stream=False))) as agen:
            async for item in agen:
                if isinstance(item, Returned):
                    result = item.value
        assert result is not None
        if result.timings.first_token_s is not None:
            self.runner.metrics.ttft.observe(result.timings.first_token_s)
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if p.params.think:
            message["reasoning_content"] = result.thought
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": self._finish_reason(p, result),
                    "logprobs": None,
                }
            ],
            "usage": self._usage(p, result),
        }

    async def stream(self, p: Prepared) -> AsyncIterator[str]:
        """SSE lines. The first piece is awaited before returning, so failures are HTTP errors."""
        t0 = time.perf_counter()
        agen = self.runner.call(self._work(p, stream=True))
        try:
            first: Any = await agen.__anext__()
        except BaseException:
            await agen.aclose()
            raise
        self.runner.metrics.ttft.observe(time.perf_counter() - t0)
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def event(
            delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None
        ) -> str:
            body: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body)}\n\n"

        def lines_for(item: Any) -> list[str]:
            if isinstance(item, Returned):
                result: Result = item.value
                return [
                    event(
                        {},
                        self._finish_reason(p, result),
                        self._usage(p, result) if p.include_usage else None,
                    ),
                    "data: [DONE]\n\n",
                ]
            kind, text = item
            if kind == "answer":
                return [event({"content": text})]
            if p.params.think:
                return [event({"reasoning_content": text})]
            return []

        async def lines() -> AsyncIterator[str]:
            try:
                yield event({"role": "assistant", "content": ""})
                for line in lines_for(first):
                    yield line
                async for item in agen:
                    for line in lines_for(item):
                        yield line
            except APIError as e:  # the status line is sent: the error goes in the stream, as OpenAI does
                yield f"data: {json.dumps(error_body(e.message, e.err_type, e.code, e.param))}\n\n"
            except Exception as e:
                from aris.errors import ArisError

                api = from_aris(e) if isinstance(e, ArisError) else APIError(500, "internal error")
                yield f"data: {json.dumps(error_body(api.message, api.err_type, api.code, api.param))}\n\n"
            finally:
                await agen.aclose()  # a client that went away stops its generation

        return lines()
