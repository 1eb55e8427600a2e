"""``dictation-report`` through the one task path: MedASR (tiny, real path) then MedGemma.

Parsing is tested with the scripted engine (code above the engines); one test runs a real engine (the
tiny Gemma 3 VLM on transformers, with the study's image), and one goes through ``aris run
dictation-report --image``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aris.context import Models
from aris.engines.fake import FakeEngine
from aris.errors import InputError
from aris.runner import run_task
from aris.speech.types import Transcript

REPORT = "FINDINGS: The lungs are clear. No pleural effusion.\nIMPRESSION: No acute findings."


def models(transcriber: Any, engine: Any) -> Models:
    return Models(generator=engine, transcriber=transcriber)


def test_transcript_becomes_a_report_and_stays_in_the_record(
    transcriber, clips: dict[str, Path], heard
) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine()
    engine.enqueue(REPORT)
    events: list[dict[str, Any]] = []
    result = run_task(
        "dictation-report", clips["short"], models=models(transcriber, engine), on_event=events.append
    )
    expected = heard("short")
    assert result.errors == []
    assert result.parsed["findings"] == "The lungs are clear. No pleural effusion."
    assert result.parsed["impression"] == "No acute findings."
    assert result.parsed["transcript"] == expected.text
    sha = hashlib.sha256(clips["short"].read_bytes()).hexdigest()
    assert result.parsed["audio_sha256"] == sha
    audio = result.provenance[0]
    assert audio["kind"] == "audio"
    assert audio["details"]["sha256"] == sha
    kept = audio["details"]["transcript"]
    assert kept["raw_text"] == expected.raw_text
    assert [w["text"] for w in kept["words"]] == [w.text for w in expected.words]
    assert kept["model"]["weights"] == transcriber.identity()["weights"]
    assert f"Dictation:\n{expected.text}" in engine.prompts[0]
    assert "<start_of_image>" not in engine.prompts[0]
    assert [e["type"] for e in events] == ["transcription"]
    assert json.loads(result.model_dump_json())["parsed"]["transcript"] == expected.text


def test_with_the_studys_image(transcriber, clips: dict[str, Path], samples) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine()
    engine.enqueue(REPORT)
    cxr = samples("dicom/cxr/RG1_UNCR.dcm")
    result = run_task("dictation-report", [clips["short"], cxr], models=models(transcriber, engine))
    assert result.parsed["impression"] == "No acute findings."
    assert [p["kind"] for p in result.provenance] == ["audio", "cxr"]
    assert engine.prompts[0].count("<start_of_image>") == 1
    assert engine.prompts[0].index("<start_of_image>") < engine.prompts[0].index("Dictation:")
    assert "use them only to resolve words" in engine.prompts[0]


def test_inputs_in_the_wrong_order_are_refused(transcriber, clips: dict[str, Path], samples) -> None:  # type: ignore[no-untyped-def]
    cxr = samples("dicom/cxr/RG1_UNCR.dcm")
    with pytest.raises(InputError, match="takes the recording first"):
        run_task("dictation-report", [cxr, clips["short"]], models=models(transcriber, FakeEngine()))
    with pytest.raises(InputError, match="the second input is the study's images"):
        run_task("dictation-report", [clips["short"], clips["ogg"]], models=models(transcriber, FakeEngine()))


class NothingHeard:
    """A transcriber that recognised nothing (what MedASR returns for a silent recording)."""

    def transcribe(self, audio: Any, on_progress: Any = None) -> Transcript:
        return Transcript(text="", raw_text="", words=[], chunks=[], duration=2.0, decoder="greedy")

    def identity(self) -> dict[str, Any]:
        return {"model": "nothing-heard"}

    def close(self) -> None:
        pass


def test_no_speech_is_an_error_not_an_empty_report(clips: dict[str, Path]) -> None:
    engine = FakeEngine()
    with pytest.raises(InputError, match="no speech was recognised in the recording"):
        run_task("dictation-report", clips["short"], models=models(NothingHeard(), engine))
    assert engine.prompts == []


def test_an_unusable_reply_keeps_the_transcript(transcriber, clips: dict[str, Path], heard) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine()
    engine.enqueue("The lungs are clear.", "Still no sections.")
    result = run_task("dictation-report", clips["short"], models=models(transcriber, engine))
    assert result.parsed is None
    assert result.errors
    assert result.provenance[0]["details"]["transcript"]["text"] == heard("short").text


def test_real_engine_end_to_end_with_the_image(
    transcriber, clips: dict[str, Path], tiny_vlm: Path, samples, heard
) -> None:  # type: ignore[no-untyped-def]
    """A real engine writes the draft: the tiny random Gemma 3 VLM on transformers, shown the X-ray too
    (random weights: the record is checked, not the words)."""
    from aris.engines.transformers import TransformersEngine

    engine = TransformersEngine(str(tiny_vlm))
    cxr = samples("dicom/cxr/RG1_UNCR.dcm")
    try:
        result = run_task(
            "dictation-report", [clips["short"], cxr], models=models(transcriber, engine), max_new_tokens=8
        )
    finally:
        engine.close()
    assert result.engine == "transformers"
    assert result.steps
    assert result.steps[0]["completion_tokens"] > 0
    assert result.usage["images"] == 1
    assert result.provenance[0]["details"]["transcript"]["raw_text"] == heard("short").raw_text
    assert (result.parsed is None) == bool(result.errors)


def test_cli_run_with_image_flag(
    tiny_asr: Path, clips: dict[str, Path], samples, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from aris.cli import app

    engine = FakeEngine()
    engine.enqueue(REPORT)
    monkeypatch.setattr("aris.cli.run.load_engine", lambda settings: engine)
    out = CliRunner().invoke(
        app,
        [
            "run",
            "dictation-report",
            str(clips["short"]),
            "--image",
            str(samples("dicom/cxr/RG1_UNCR.dcm")),
            "--asr-model",
            str(tiny_asr),
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout)
    assert record["task"] == "dictation-report"
    assert record["parsed"]["impression"] == "No acute findings."
    assert [p["kind"] for p in record["provenance"]] == ["audio", "cxr"]
    assert record["usage"]["images"] == 1
