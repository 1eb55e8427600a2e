"""Chat completions: OpenAI request -> Aris messages -> the engine -> OpenAI response or SSE stream.

The logic returns plain dicts or an async iterator of SSE lines; routes turn them into HTTP.
Thought never enters ``content``: it goes to ``reasoning_content`` when asked for, else nowhere.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from PIL import Image

from aris.prompt import build_turns, count_images, render
from aris.server.errors import APIError
from aris.server.protocol import ChatCompletionRequest
from aris.server.runner import EngineRunner
from aris.thinking import Piece, ThoughtSplitter, split_text
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
                413, f"image of {img.width}x{img.height} pixels is over the limit", param="messages"
            )
        return img.convert("RGB")
    except (binascii.Error, OSError, ValueError) as e:
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


class ChatService:
    def __init__(self, runner: EngineRunner, model_name: str, default_max_tokens: int = 1024) -> None:
        self.runner = runner
        self.model_name = model_name
        self.default_max_tokens = default_max_tokens

    def _prepare(self, req: ChatCompletionRequest) -> tuple[Any, GenerationParams, int]:
        params = to_params(req, self.default_max_tokens)
        turns = build_turns(to_messages(req), think=params.think)
        engine = self.runner.engine
        engine.check_budget(turns, params)
        prompt_tokens = (
            engine.count_text_tokens(render(turns)) + count_images(turns) * engine.capabilities.image_tokens
        )
        return turns, params, prompt_tokens

    def _usage(self, prompt_tokens: int, raw: str) -> dict[str, int]:
        completion = self.runner.engine.count_text_tokens(raw) if raw else 0
        self.runner.metrics.tokens.labels("prompt").inc(prompt_tokens)
        self.runner.metrics.tokens.labels("completion").inc(completion)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }

    def _finish_reason(self, raw: str, params: GenerationParams) -> str:
        return "length" if self.runner.engine.count_text_tokens(raw) >= params.max_new_tokens else "stop"

    async def complete(self, req: ChatCompletionRequest) -> dict[str, Any]:
        turns, params, prompt_tokens = self._prepare(req)
        engine = self.runner.engine
        raw: list[str] = []
        t0 = time.perf_counter()
        async for chunk in self.runner.iterate(lambda: engine.stream(turns, params)):
            if not raw:
                self.runner.metrics.ttft.observe(time.perf_counter() - t0)
            raw.append(chunk)
        text = "".join(raw)
        thought, answer = split_text(text)  # the whole reply: everything before the last close is thought
        message: dict[str, Any] = {"role": "assistant", "content": answer.strip()}
        if params.think:
            message["reasoning_content"] = thought.strip() or None
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": self._finish_reason(text, params),
                    "logprobs": None,
                }
            ],
            "usage": self._usage(prompt_tokens, text),
        }

    async def stream(self, req: ChatCompletionRequest) -> AsyncIterator[str]:
        """SSE lines. The first engine chunk is awaited before returning, so failures are HTTP errors."""
        turns, params, prompt_tokens = self._prepare(req)
        engine = self.runner.engine
        t0 = time.perf_counter()
        agen = self.runner.iterate(lambda: engine.stream(turns, params))
        try:
            first: str | None = await agen.__anext__()
        except StopAsyncIteration:
            first = None
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

        def deltas(pieces: list[Piece]) -> list[str]:
            out = []
            for p in pieces:
                if p.kind == "answer":
                    out.append(event({"content": p.text}))
                elif params.think:
                    out.append(event({"reasoning_content": p.text}))
            return out

        async def lines() -> AsyncIterator[str]:
            splitter = ThoughtSplitter(think=params.think)
            raw: list[str] = []
            try:
                yield event({"role": "assistant", "content": ""})
                if first is not None:
                    raw.append(first)
                    for line in deltas(splitter.feed(first)):
                        yield line
                async for chunk in agen:
                    raw.append(chunk)
                    for line in deltas(splitter.feed(chunk)):
                        yield line
                for line in deltas(splitter.finish()):
                    yield line
                text = "".join(raw)
                yield event({}, self._finish_reason(text, params), self._usage(prompt_tokens, text))
                yield "data: [DONE]\n\n"
            finally:
                await agen.aclose()  # a client that went away stops its generation

        return lines()
