"""Security behaviour of the server settings and the HTTP guard (no engine work needed: FakeEngine)."""

from __future__ import annotations

import logging

import httpx
import pytest
from typer.testing import CliRunner

from aris.cli import app as cli_app
from aris.engines.fake import FakeEngine
from aris.errors import ConfigError
from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server


def test_refuses_to_bind_publicly_without_a_key() -> None:
    with pytest.raises(ConfigError, match="without an API key"):
        ServerSettings(host="0.0.0.0").check_safe()
    ServerSettings(host="0.0.0.0", api_key="k" * 16).check_safe()
    ServerSettings(host="127.0.0.1").check_safe()
    ServerSettings(host="::1").check_safe()
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--engine", "fake"])
    assert result.exit_code != 0
    assert "without an API key" in str(result.exception)


def test_oversized_request_is_413_and_access_log_has_no_phi(caplog: pytest.LogCaptureFixture) -> None:
    settings = ServerSettings(max_request_mb=1, api_key="k")
    with (
        caplog.at_level(logging.INFO, logger="aris.server.access"),
        live_server(create_app(settings, engine=FakeEngine())) as url,
    ):
        h = {"Authorization": "Bearer k"}
        big = {"messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
        r = httpx.post(f"{url}/v1/chat/completions", json=big, headers=h)
        assert r.status_code == 413
        r = httpx.post(
            f"{url}/v1/chat/completions?patient=Jane%20Doe",
            json={"messages": [{"role": "user", "content": "Jane Doe, MRN 12345, has a cough"}]},
            headers=h,
        )
        assert r.status_code == 200
    text = caplog.text
    assert "/v1/chat/completions" in text
    assert "Jane" not in text
    assert "12345" not in text


def test_cors_is_off_unless_configured() -> None:
    with live_server(create_app(ServerSettings(), engine=FakeEngine())) as url:
        r = httpx.options(
            f"{url}/v1/models",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in r.headers
    with live_server(
        create_app(ServerSettings(cors_origins=["https://ui.example"]), engine=FakeEngine())
    ) as url:
        r = httpx.get(f"{url}/v1/models", headers={"Origin": "https://ui.example"})
        assert r.headers.get("access-control-allow-origin") == "https://ui.example"


def test_client_that_goes_away_cancels_generation() -> None:
    import threading
    import time

    from aris.engines.base import Engine

    class SlowEngine(FakeEngine):
        """Scripted, slow: counts chunks produced so the test can see generation stop."""

        def __init__(self) -> None:
            super().__init__()
            self.produced = 0
            self.closed = threading.Event()

        def stream(self, turns, params):  # type: ignore[no-untyped-def]
            try:
                for _ in range(400):
                    time.sleep(0.01)
                    self.produced += 1
                    yield "tok "
            finally:
                self.closed.set()

    engine = SlowEngine()
    assert isinstance(engine, Engine)
    with live_server(create_app(ServerSettings(), engine=engine)) as url:
        with httpx.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "x"}], "stream": True},
        ) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i > 5:
                    break
        assert engine.closed.wait(10), "generation went on after the client left"
        assert engine.produced < 400
