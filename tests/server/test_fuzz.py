"""Schemathesis generates requests from the server's own /openapi.json (valid and invalid bodies, odd
path parameters, uploads) and sends them to a real server on the 270M GGUF: no route may answer 500,
and every error must come back in the OpenAI shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from aris.config import ArisSettings
from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server

KEY = "fuzz-key-0123456789abcdef"
H = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def fuzz_url(llama_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("home")
    # Generation capped at 8 tokens: the fuzzer sends hundreds of requests, and any valid one generates.
    config = ServerSettings(api_key=KEY, max_tokens=8, max_upload_mb=2, max_request_mb=2)
    with live_server(create_app(config, engine=llama_engine, aris_settings=ArisSettings(home=home))) as url:
        yield url


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_route_answers_500(fuzz_url: str, mode: str) -> None:
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json", headers=H)
    seen: list[tuple[str, str, int]] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(
            max_examples=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            response = case.call(base_url=fuzz_url, headers=H, timeout=120)
            seen.append((case.method, case.path, response.status_code))
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error"}, body
                assert set(body["error"]) == {"message", "type", "param", "code"}, body

        try:
            check()
        except Unsatisfiable:
            if mode == "positive":
                raise  # negative data cannot be made for an operation that takes nothing
    assert {path for _, path, _ in seen} >= {"/v1/chat/completions", "/v1/jobs", "/v1/uploads"}


def test_the_server_is_still_serving_after_the_fuzz(fuzz_url: str) -> None:
    r = httpx.post(
        f"{fuzz_url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2},
        headers=H,
        timeout=120,
    )
    assert r.status_code == 200
