"""The OpenAI-compatible API, driven by the official ``openai`` client against a real uvicorn server
backed by real engines: llama.cpp with the Gemma 3 270M GGUF (text) and transformers with the tiny
Gemma 3 VLM (images)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server


@pytest.fixture(scope="module")
def text_server(llama_engine: Any) -> Iterator[str]:
    with live_server(
        create_app(ServerSettings(api_key="s3cret", model_name="gemma3-270m"), engine=llama_engine)
    ) as url:
        yield url


@pytest.fixture(scope="module")
def vision_server(vlm_engine: Any) -> Iterator[str]:
    with live_server(create_app(ServerSettings(model_name="tiny-vlm"), engine=vlm_engine)) as url:
        yield url


def client(url: str, key: str = "s3cret") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_plain_completion(text_server: str) -> None:
    c = client(text_server)
    resp = c.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "The capital of France is"}], max_tokens=8
    )
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens > 0
    again = c.chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": "The capital of France is"}], max_tokens=8
    )
    assert again.choices[0].message.content == resp.choices[0].message.content  # greedy by default


def test_streaming_equals_plain(text_server: str) -> None:
    c = client(text_server)
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "List three vital signs."},
    ]
    plain = c.chat.completions.create(model="gemma3-270m", messages=msgs, max_tokens=12)
    chunks = list(c.chat.completions.create(model="gemma3-270m", messages=msgs, max_tokens=12, stream=True))
    assert len(chunks) > 2
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed.strip() == plain.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    # Usage comes with a stream only when asked for, as OpenAI does, and then it matches the plain one.
    assert all(ch.usage is None for ch in chunks)
    counted = list(
        c.chat.completions.create(
            model="gemma3-270m",
            messages=msgs,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = counted[-1].usage
    assert usage is not None
    assert plain.usage is not None
    assert usage.prompt_tokens == plain.usage.prompt_tokens
    assert usage.completion_tokens == plain.usage.completion_tokens


def test_json_schema_response_format(text_server: str) -> None:
    schema = {
        "type": "object",
        "properties": {"finding": {"type": "string"}, "present": {"type": "boolean"}},
        "required": ["finding", "present"],
        "additionalProperties": False,
    }
    resp = client(text_server).chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "Is there a pleural effusion? Answer in JSON."}],
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "finding", "schema": schema}},
    )
    value = json.loads(resp.choices[0].message.content or "")
    assert set(value) == {"finding", "present"}
    assert isinstance(value["present"], bool)


def test_models_lists_the_served_model(text_server: str) -> None:
    ids = [m.id for m in client(text_server).models.list()]
    assert ids == ["gemma3-270m"]


def test_key_is_required_when_set(text_server: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(text_server, key="wrong").models.list()
    r = httpx.post(
        f"{text_server}/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{text_server}/healthz").status_code == 200


def test_errors_have_the_openai_shape(text_server: str) -> None:
    h = {"Authorization": "Bearer s3cret"}
    r = httpx.post(f"{text_server}/v1/chat/completions", headers=h, json={"messages": []})
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(
        f"{text_server}/v1/chat/completions",
        headers=h,
        json={"messages": [{"role": "assistant", "content": "x"}]},
    )
    assert r.status_code == 400
    assert "alternate" in r.json()["error"]["message"] or "user" in r.json()["error"]["message"]
    r = httpx.post(
        f"{text_server}/v1/chat/completions",
        headers=h,
        json={
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.org/x.png"}}],
                }
            ]
        },
    )
    assert r.status_code == 400
    assert "remote URLs are never fetched" in r.json()["error"]["message"]


def test_metrics_in_prometheus_format(text_server: str) -> None:
    r = httpx.get(f"{text_server}/metrics", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200
    assert "aris_requests_total" in r.text
    assert 'aris_tokens_total{kind="completion"}' in r.text
    assert "aris_queue_depth" in r.text


def _png_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_image_request_through_the_transformers_engine(vision_server: str) -> None:
    c = openai.OpenAI(base_url=f"{vision_server}/v1", api_key="none", max_retries=0)
    content = [
        {"type": "image_url", "image_url": {"url": _png_uri(Image.new("RGB", (300, 200), (80, 80, 80)))}},
        {"type": "text", "text": "Describe this chest X-ray."},
    ]
    resp = c.chat.completions.create(
        model="tiny-vlm", messages=[{"role": "user", "content": content}], max_tokens=6
    )
    assert resp.choices[0].message.content is not None
    assert resp.usage is not None
    assert resp.usage.prompt_tokens >= 16  # the tiny model's 16 image soft tokens are counted
    stream = c.chat.completions.create(
        model="tiny-vlm", messages=[{"role": "user", "content": content}], max_tokens=6, stream=True
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices).strip() == (
        resp.choices[0].message.content
    )


def test_thinking_goes_to_reasoning_content_never_content(vision_server: str) -> None:
    r = httpx.post(
        f"{vision_server}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Why?"}], "max_tokens": 4, "think": True},
    )
    assert r.status_code == 200
    msg = r.json()["choices"][0]["message"]
    assert "<unused94>" not in (msg["content"] or "")
    assert "reasoning_content" in msg
