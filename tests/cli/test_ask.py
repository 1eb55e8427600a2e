"""CLI formatting above the engines, with the scripted engine (real engines are tested in tests/engines)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aris.cli import app
from aris.engines.fake import FakeEngine
from aris.notice import NOTICE


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    engine = FakeEngine(chunk=2)
    monkeypatch.setattr("aris.cli.ask.load_engine", lambda settings: engine)
    return engine


def test_ask_streams_the_answer_without_the_thought_and_prints_the_notice(scripted: FakeEngine) -> None:
    scripted.enqueue("<unused94>thought\nsecret reasoning<unused95>Pneumonia is unlikely.")
    result = CliRunner().invoke(app, ["ask", "--engine", "fake", "--think", "Is this pneumonia?"])
    assert result.exit_code == 0, result.output
    assert "Pneumonia is unlikely." in result.output
    assert "secret reasoning" not in result.output
    assert NOTICE in result.output.replace("\n", " ").replace("  ", " ") or "clinician" in result.output
    assert "SYSTEM INSTRUCTION: think silently if needed." in scripted.prompts[0]


def test_ask_json_is_the_result_record(scripted: FakeEngine) -> None:
    scripted.enqueue("<unused94>thought\nhidden<unused95>Answer.")
    result = CliRunner().invoke(app, ["ask", "--engine", "fake", "--json", "--think", "Q?"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["text"] == "Answer."
    assert "thought" not in record
    assert record["notice"] == NOTICE
    assert record["engine"] == "fake"
    assert record["prompt_sha256"]


def test_show_thought_prints_it_apart(scripted: FakeEngine) -> None:
    scripted.enqueue("<unused94>thought\nvisible reasoning<unused95>Answer.")
    result = CliRunner().invoke(app, ["ask", "--engine", "fake", "--think", "--show-thought", "Q?"])
    assert result.exit_code == 0
    assert "visible reasoning" in result.output


def test_engine_errors_are_clean_messages() -> None:
    result = CliRunner().invoke(app, ["ask", "--engine", "transformers", "Q?"])
    assert result.exit_code != 0
    assert "no model" in str(result.exception) or "no model" in result.output
