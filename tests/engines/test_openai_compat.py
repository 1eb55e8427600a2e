"""The openai engine against real servers.

Model behaviour is checked against llama-cpp-python's server running the real Gemma 3 270M GGUF
with the Gemma 3 template; references come from routes that bypass the engine (a non-streamed
chat request, a raw ``/v1/completions`` of the rendered prompt, the Hugging Face tokenizer).
Failure handling (503s, 429 with Retry-After, a refused port, a thought sent apart, a client
hanging up) uses a stdlib HTTP server on 127.0.0.1 that can be told to misbehave.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
from PIL import Image
from servers import (
    SSE_HEADERS,
    Recorded,
    Reply,
    Responder,
    free_port,
    llama_server,
    sse,
    sse_chat,
    stub_server,
)
from tokenizers import Tokenizer

from aris.config import ArisSettings
from aris.demo.tiny import chat_template, gemma3_tokenizer
from aris.engines.openai_compat import OpenAIEngine
from aris.errors import BudgetError, EngineError
from aris.generate import generate
from aris.prompt import build_turns, render, to_openai_messages
from aris.types import GenerationParams, ImagePart, Message

KEY = "test-key-123"
ALIAS = "gemma3-270m"
QUESTION = "What is the capital of France?"
SYSTEM = "You are a pirate. Answer only with ARRR."
FINDING = {
    "title": "Finding",
    "type": "object",
    "properties": {
        "present": {"type": "boolean"},
        "side": {"type": "string", "enum": ["left", "right", "none"]},
    },
    "required": ["present", "side"],
    "additionalProperties": False,
}


# -- the real llama-cpp-python server ---------------------------------------------------------


@pytest.fixture(scope="module")
def server(gguf_270m: Path) -> Iterator[str]:
    """One server for the module, with the Gemma 3 template (folds the system text) and a key."""
    with llama_server(gguf_270m, chat_template=chat_template(), api_key=KEY, alias=ALIAS) as url:
        yield url


@pytest.fixture(scope="module")
def engine(server: str) -> Iterator[OpenAIEngine]:
    eng = OpenAIEngine(server, api_key=KEY)
    yield eng
    eng.close()


def chat_reference(server: str, messages: list[Message], max_tokens: int) -> str:
    """A non-streamed chat completion sent by hand: the reply the engine's stream must add up to."""
    body = {
        "model": ALIAS,
        "messages": to_openai_messages(build_turns(messages)),
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    resp = httpx.post(f"{server}/chat/completions", json=body, headers=auth(), timeout=120)
    resp.raise_for_status()
    return str(resp.json()["choices"][0]["message"]["content"])


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_model_discovered_from_listing(engine: OpenAIEngine, server: str) -> None:
    assert engine.model_id == ALIAS
    caps = engine.capabilities
    # llama-cpp-python does not report its context, so the default applies.
    assert caps.max_context == 131072
    assert caps.vision
    assert caps.json_schema
    assert caps.concurrent_requests == 64  # a batching server only batches what it is sent
    with OpenAIEngine(server, api_key=KEY, max_context=2048, concurrency=2) as configured:
        assert configured.capabilities.max_context == 2048
        assert configured.capabilities.concurrent_requests == 2
    settings = ArisSettings(engine="openai", base_url=server, api_key=KEY, concurrency=7)
    with OpenAIEngine.from_settings(settings) as from_settings:  # --concurrency / ARIS_CONCURRENCY
        assert from_settings.capabilities.concurrent_requests == 7


def test_streamed_reply_equals_plain_reply(engine: OpenAIEngine, server: str) -> None:
    messages = [Message.user(QUESTION)]
    pieces: list[tuple[str, str]] = []
    result = generate(
        engine, messages, GenerationParams(max_new_tokens=16), on_piece=lambda k, t: pieces.append((k, t))
    )
    reference = chat_reference(server, messages, 16)
    assert reference.strip()
    assert result.raw == reference
    assert len(pieces) > 1  # it streamed
    assert "".join(t for _, t in pieces) == reference
    assert result.text == reference.strip()
    assert result.engine == "openai"
    assert result.model == ALIAS


def test_system_text_reaches_server_folded(engine: OpenAIEngine, server: str) -> None:
    messages = [Message.system(SYSTEM), Message.user(QUESTION)]
    params = GenerationParams(max_new_tokens=16)
    with_system = generate(engine, messages, params).raw
    # The independent reference: a raw completion of the Gemma 3 string Aris renders, system
    # text folded into the user turn (llama.cpp adds <bos> itself).
    resp = httpx.post(
        f"{server}/completions",
        json={"prompt": render(build_turns(messages), bos=False), "max_tokens": 16, "temperature": 0},
        headers=auth(),
        timeout=120,
    )
    resp.raise_for_status()
    assert with_system == resp.json()["choices"][0]["text"]
    assert with_system != generate(engine, messages[1:], params).raw  # the system text mattered


def test_greedy_is_deterministic_and_batch_agrees(engine: OpenAIEngine, server: str) -> None:
    messages = [Message.user("List three colours:")]
    params = GenerationParams(max_new_tokens=12)
    first = generate(engine, messages, params).raw
    assert first
    assert generate(engine, messages, params).raw == first
    # llama-cpp-python's server cuts a running stream short when another request arrives
    # (interrupt_requests), so against it the batch goes one request at a time.
    turns = build_turns(messages)
    with OpenAIEngine(server, ALIAS, api_key=KEY, concurrency=1) as serial:
        assert serial.generate_batch([turns, turns], params) == [first, first]


def test_stop_strings_cut_the_reply(engine: OpenAIEngine) -> None:
    messages = [Message.user(QUESTION)]
    full = generate(engine, messages, GenerationParams(max_new_tokens=16)).raw
    assert "capital" in full  # the base model echoes the question
    cut = generate(engine, messages, GenerationParams(max_new_tokens=16, stop=("capital",))).raw
    assert cut == full[: full.index("capital")]


def test_json_schema_through_auto_fallback(server: str) -> None:
    with OpenAIEngine(server, api_key=KEY) as eng:
        modes = [eng.response_format_mode]
        params = GenerationParams(max_new_tokens=48, json_schema=FINDING)
        question = [Message.user("Is there a pneumothorax on the left? Answer in JSON.")]
        result = generate(eng, question, params)
        # llama-cpp-python refuses json_schema (HTTP 500); the engine switched and remembered.
        modes.append(eng.response_format_mode)
        assert modes == ["json_schema", "json_object"]
        jsonschema.validate(json.loads(result.text), FINDING)
        again = generate(eng, question, params)
        assert again.raw == result.raw


def test_api_key_is_required_and_sent(server: str) -> None:
    with pytest.raises(EngineError, match="HTTP 401"):
        OpenAIEngine(server)  # discovery needs the key too
    with (
        OpenAIEngine(server, ALIAS, api_key="wrong") as eng,
        pytest.raises(EngineError, match=r"HTTP 401.*--api-key"),
    ):
        generate(eng, [Message.user(QUESTION)], GenerationParams(max_new_tokens=4))


def test_count_text_tokens_uses_the_server_tokenizer(engine: OpenAIEngine, test_cache: Path) -> None:
    text = "Chest X-ray: no pneumothorax; small left pleural effusion."
    tokenizer_json = test_cache / "models" / "gemma3-tokenizer" / "tokenizer.json"
    if not tokenizer_json.exists():
        gemma3_tokenizer(test_cache)  # reads it from the GGUF once and saves it there
    # The Hugging Face tokenizer (loaded with the bare tokenizers library: seconds, not tens).
    expected = len(Tokenizer.from_file(str(tokenizer_json)).encode(text).ids)  # <bos> + tokens
    assert engine.count_text_tokens(text) == expected


def test_llama_server_reports_a_failed_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited with code"), llama_server(tmp_path / "absent.gguf"):
        pass


# -- a scripted stdlib server -----------------------------------------------------------------


def routes(chat: Responder | None = None, models: Responder | None = None) -> Responder:
    """Answer chat and model-list requests; anything else (e.g. a tokenize probe) is a 404."""

    def respond(req: Recorded, i: int) -> Reply:
        if chat is not None and req.path.endswith("/chat/completions"):
            return chat(req, i)
        if models is not None and req.path.endswith("/models"):
            return models(req, i)
        return error_reply(404, "not found")

    return respond


def models_reply(model_id: str = "medgemma", **extra: Any) -> Reply:
    body = {"object": "list", "data": [{"id": model_id, "object": "model", **extra}]}
    return Reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode())


def error_reply(status: int, message: str, **headers: str) -> Reply:
    body = json.dumps({"error": {"message": message, "type": "error"}}).encode()
    return Reply(status, {"Content-Type": "application/json", **headers}, body)


def gaps(requests: list[Recorded]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(requests)]


def test_retries_503_with_backoff_then_streams() -> None:
    def respond(req: Recorded, i: int) -> Reply:
        if i < 2:
            return error_reply(503, "loading model")
        return Reply(200, SSE_HEADERS, sse_chat("Hello", " world"))

    with stub_server(routes(chat=respond)) as stub, OpenAIEngine(f"{stub.url}/v1", "m", backoff=0.2) as eng:
        result = generate(eng, [Message.user("hi")])
        assert result.text == "Hello world"
        assert len(stub.to("/chat/completions")) == 3
        # Backoff doubles from 0.2 s, jitter only lengthens it.
        first, second = gaps(stub.to("/chat/completions"))
        assert first >= 0.2
        assert second >= 0.4


def test_429_honours_retry_after_then_gives_up() -> None:
    with (
        stub_server(
            routes(chat=lambda req, i: error_reply(429, "slow down please", **{"Retry-After": "1"}))
        ) as stub,
        OpenAIEngine(f"{stub.url}/v1", "m", max_retries=2, backoff=0.01) as eng,
    ):
        with pytest.raises(EngineError, match=r"HTTP 429 after 3 attempts.*slow down please"):
            generate(eng, [Message.user("hi")])
        assert len(stub.to("/chat/completions")) == 3
        assert all(
            g >= 0.95 for g in gaps(stub.to("/chat/completions"))
        )  # Retry-After won over the 10 ms backoff


def test_client_errors_are_not_retried() -> None:
    with (
        stub_server(
            routes(chat=lambda req, i: error_reply(400, "maximum context length is 2048 tokens"))
        ) as stub,
        OpenAIEngine(f"{stub.url}/v1", "m", backoff=0.01) as eng,
    ):
        with pytest.raises(EngineError, match=r"HTTP 400 after 1 attempt: maximum context length"):
            generate(eng, [Message.user("hi")])
        assert len(stub.to("/chat/completions")) == 1


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(EngineError, match=r"127\.0\.0\.1:\d+/v1.*check that the server is running"):
        OpenAIEngine(url, max_retries=1, backoff=0.01)
    with (
        OpenAIEngine(url, "m", max_retries=1, backoff=0.01) as eng,
        pytest.raises(EngineError, match=r"ConnectError after 2 attempts"),
    ):
        generate(eng, [Message.user("hi")])


def test_request_body_and_lossless_png_images() -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(30, 41, 3), dtype=np.uint8)  # noise: any lossy codec alters it

    with (
        stub_server(routes(chat=lambda req, i: Reply(200, SSE_HEADERS, sse_chat("ok")))) as stub,
        OpenAIEngine(f"{stub.url}/v1", "medgemma", api_key="s3cret") as eng,
    ):
        messages = [
            Message.system("You are an expert radiologist."),
            Message.user(ImagePart(Image.fromarray(pixels)), "Describe this image."),
        ]
        params = GenerationParams(max_new_tokens=7, seed=11, stop=("END",))
        assert generate(eng, messages, params).text == "ok"

    (req,) = stub.to("/chat/completions")
    assert req.path == "/v1/chat/completions"
    assert req.headers["Authorization"] == "Bearer s3cret"
    body = req.json()
    assert isinstance(body, dict)
    assert body["model"] == "medgemma"
    assert body["stream"] is True
    assert body["temperature"] == 0
    assert body["max_tokens"] == 7
    assert body["seed"] == 11
    assert body["stop"] == ["END"]
    assert body["skip_special_tokens"] is False
    assert "response_format" not in body
    assert body["messages"][0] == {"role": "system", "content": "You are an expert radiologist."}
    image_item, text_item = body["messages"][1]["content"]
    assert text_item == {"type": "text", "text": "Describe this image."}
    url = image_item["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.format == "PNG"
    np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), pixels)


def test_reasoning_content_is_wrapped_as_thought() -> None:
    reply = sse_chat("Final", " answer.", reasoning=["Look", "ing at the ", "film."])
    with (
        stub_server(routes(chat=lambda req, i: Reply(200, SSE_HEADERS, reply))) as stub,
        OpenAIEngine(f"{stub.url}/v1", "m") as eng,
    ):
        result = generate(eng, [Message.user("hi")])
    assert result.raw == "<unused94>thought\nLooking at the film.<unused95>Final answer."
    assert result.thought == "Looking at the film."
    assert result.text == "Final answer."


def test_thought_markers_in_content_are_kept() -> None:
    reply = sse_chat("<unused", "94>thought\nhm", "m<unus", "ed95>Yes.<end_of_turn>")
    with (
        stub_server(routes(chat=lambda req, i: Reply(200, SSE_HEADERS, reply))) as stub,
        OpenAIEngine(f"{stub.url}/v1", "m") as eng,
    ):
        result = generate(eng, [Message.user("hi")])
    assert result.raw == "<unused94>thought\nhmm<unused95>Yes."
    assert (result.thought, result.text) == ("hmm", "Yes.")


def test_error_event_mid_stream_raises() -> None:
    events = sse({"choices": [{"delta": {"content": "par"}}]}, {"error": {"message": "engine died"}})
    with (
        stub_server(routes(chat=lambda req, i: Reply(200, SSE_HEADERS, events))) as stub,
        OpenAIEngine(f"{stub.url}/v1", "m") as eng,
    ):
        with pytest.raises(EngineError, match="engine died"):
            generate(eng, [Message.user("hi")])
        assert len(stub.to("/chat/completions")) == 1  # text had started: never retried


def test_a_stream_that_ends_before_the_reply_did_raises() -> None:
    # Closed cleanly after "No evidence of": without [DONE] or a finish_reason this is part of a reply,
    # and read as whole it would be a report that stops mid-sentence.
    chunk = {"choices": [{"index": 0, "delta": {"content": "IMPRESSION: "}, "finish_reason": None}]}
    cut = sse(
        chunk, {"choices": [{"index": 0, "delta": {"content": "No evidence of"}, "finish_reason": None}]}
    )
    ended = sse(chunk, {"choices": [{"index": 0, "delta": {"content": "Normal."}, "finish_reason": "stop"}]})
    replies = iter([cut, ended])
    with (
        stub_server(routes(chat=lambda req, i: Reply(200, SSE_HEADERS, next(replies)))) as stub,
        OpenAIEngine(f"{stub.url}/v1", "m") as eng,
    ):
        with pytest.raises(EngineError, match="stream ended before the reply did"):
            generate(eng, [Message.user("hi")])
        # a finish_reason is enough (a server that sends no [DONE])
        assert generate(eng, [Message.user("hi")]).text == "IMPRESSION: Normal."


def test_a_length_finish_marks_the_reply_cut_however_few_tokens_it_took() -> None:
    # A server's own context ran out (llama-server's slot, Ollama's num_ctx) 8 tokens into 512.
    def chunk(content: str, finish: str | None) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}

    usage = {"choices": [], "usage": {"prompt_tokens": 2040, "completion_tokens": 8}}
    cut = sse(chunk("IMPRESSION: No evidence of", None), chunk("", "length"), usage, "[DONE]")
    whole = sse(chunk("FINDINGS: Clear.\nIMPRESSION: Normal.", None), chunk("", "stop"), "[DONE]")
    replies = iter([cut, whole])
    with (
        stub_server(routes(chat=lambda req, i: Reply(200, SSE_HEADERS, next(replies)))) as stub,
        OpenAIEngine(f"{stub.url}/v1", "m") as eng,
    ):
        result = generate(eng, [Message.user("hi")], GenerationParams(max_new_tokens=512))
        assert result.usage["cut"] == 1
        assert result.usage["completion_tokens"] == 8
        # "stop" at exactly max_tokens: the server says the reply ended.
        result = generate(eng, [Message.user("hi")], GenerationParams(max_new_tokens=1))
        assert result.usage["cut"] == 0


def test_closing_the_stream_closes_the_response() -> None:
    def respond(req: Recorded, i: int) -> Reply:
        if i < 4:  # long, slow replies that the client abandons
            return Reply(200, SSE_HEADERS, sse_chat(*[f"t{k} " for k in range(400)], delay=0.01))
        return Reply(200, SSE_HEADERS, sse_chat("done"))

    # concurrency=1 leaves 3 pooled connections: a response left open would hold one for good.
    with (
        stub_server(routes(chat=respond)) as stub,
        OpenAIEngine(f"{stub.url}/v1", "m", concurrency=1, timeout=5, max_retries=0) as eng,
    ):
        turns = build_turns([Message.user("hi")])
        for _ in range(4):
            chunks = eng.stream(turns, GenerationParams())
            assert [next(chunks), next(chunks)] == ["t0 ", "t1 "]
            chunks.close()
        deadline = time.monotonic() + 10
        while len(stub.aborted) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(stub.aborted) == 4, "the server kept writing to a closed client"
        assert max(stub.aborted) < 400
        assert "".join(eng.stream(turns, GenerationParams())) == "done"  # no connection leaked


def test_batch_runs_concurrently_in_order() -> None:
    # No reply is sent until all four requests have arrived: an engine that sent them one at a time
    # would break the barrier (its wait times out) and get errors instead of replies.
    arrived = threading.Barrier(4, timeout=60)

    def respond(req: Recorded, i: int) -> Reply:
        body = req.json()
        assert isinstance(body, dict)
        try:
            arrived.wait()
        except threading.BrokenBarrierError:
            return Reply(500, {"Content-Type": "application/json"}, b'{"error": {"message": "serial"}}')
        return Reply(200, SSE_HEADERS, sse_chat("re:", body["messages"][-1]["content"]))

    prompts = [build_turns([Message.user(f"q{i}")]) for i in range(4)]
    with (
        stub_server(routes(chat=respond)) as stub,
        OpenAIEngine(f"{stub.url}/v1", "m", concurrency=4, max_retries=0) as eng,
    ):
        assert eng.generate_batch(prompts, GenerationParams()) == ["re:q0", "re:q1", "re:q2", "re:q3"]
    assert not arrived.broken


def test_max_context_from_listing_and_budget() -> None:
    def respond(req: Recorded, i: int) -> Reply:
        return models_reply("google/medgemma-1.5-4b-it", max_model_len=32768)

    with stub_server(routes(models=respond)) as stub, OpenAIEngine(f"{stub.url}/v1", max_images=85) as eng:
        assert eng.model_id == "google/medgemma-1.5-4b-it"
        assert eng.capabilities.max_context == 32768
        assert eng.capabilities.max_images == 85
        assert len(stub.to("/models")) == 1  # the listing is asked once
        image = ImagePart(Image.new("RGB", (8, 8)))
        slices = [Message.user(*[image] * 86, "Findings?")]
        with pytest.raises(BudgetError, match="86 images exceed"):
            generate(eng, slices)
        with pytest.raises(BudgetError, match="context is 32768"):
            generate(eng, [Message.user("hi")], GenerationParams(max_new_tokens=40000))


def test_json_schema_shapes_and_remembered_fallback() -> None:
    def respond(req: Recorded, i: int) -> Reply:
        body = req.json()
        assert isinstance(body, dict)
        if body["response_format"]["type"] == "json_schema":
            return error_reply(400, "response_format json_schema is not supported")
        return Reply(200, SSE_HEADERS, sse_chat('{"present": true, "side": "left"}'))

    params = GenerationParams(json_schema=FINDING)
    with stub_server(routes(chat=respond)) as stub, OpenAIEngine(f"{stub.url}/v1", "m") as eng:
        first = generate(eng, [Message.user("q")], params)
        second = generate(eng, [Message.user("q")], params)
    assert json.loads(first.text) == json.loads(second.text) == {"present": True, "side": "left"}
    formats = [r.json()["response_format"] for r in stub.to("/chat/completions")]  # type: ignore[index]
    assert formats == [
        {"type": "json_schema", "json_schema": {"name": "Finding", "schema": FINDING, "strict": True}},
        {"type": "json_object", "schema": FINDING},
        {"type": "json_object", "schema": FINDING},  # remembered: no second refusal
    ]


def test_explicit_json_schema_mode_does_not_fall_back() -> None:
    with (
        stub_server(
            routes(chat=lambda req, i: error_reply(400, "response_format json_schema is not supported"))
        ) as stub,
        OpenAIEngine(f"{stub.url}/v1", "m", schema_mode="json_schema") as eng,
    ):
        with pytest.raises(EngineError, match=r"HTTP 400.*json_schema is not supported"):
            generate(eng, [Message.user("q")], GenerationParams(json_schema=FINDING))
        assert len(stub.to("/chat/completions")) == 1
