"""``aris run``: formatting and files above the engines (scripted engine), then once on a real one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from aris.cli import app
from aris.engines.fake import FakeEngine
from aris.notice import NOTICE


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    engine = FakeEngine(chunk=4)
    monkeypatch.setattr("aris.cli.run.load_engine", lambda settings: engine)
    return engine


def test_localize_streams_prints_the_table_and_writes_files(
    scripted: FakeEngine, samples, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    scripted.enqueue('Final Answer: ```json\n[{"box_2d": [200, 100, 800, 450], "label": "right lung"}]\n```')
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "cxr-localize",
            str(samples("dicom/cxr/highdicom_dx_image.dcm")),
            "--labels",
            "right lung",
            "--out",
            str(out),
            "--engine",
            "fake",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "Final Answer:" in text  # the answer streamed
    assert "cxr-localize: structured result" in text
    assert "right lung" in text
    assert flat(NOTICE) in text
    record = json.loads((out / "result.json").read_text())
    assert record["parsed"]["boxes"][0]["label"] == "right lung"
    overlay = Image.open(out / "overlay.png")
    assert overlay.size == tuple(record["parsed"]["image_size"])
    assert "<start_of_image>" in scripted.prompts[0]


def test_json_is_the_result_record(scripted: FakeEngine) -> None:
    scripted.enqueue("<unused94>thought\nsecret<unused95>Working it out.\nFinal Answer: C")
    result = CliRunner().invoke(
        app, ["run", "text-qa", "-q", "Which?", "--choices", "x,y,z", "--json", "--engine", "fake"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["parsed"] == {"answer": "C. z", "choice": "z", "letter": "C"}
    assert record["notice"] == NOTICE
    assert "thought" not in record
    assert record["steps"][0]["name"] == "answer"
    assert "SYSTEM INSTRUCTION: think silently if needed." in scripted.prompts[0]


def test_errors_are_shown_not_raised(scripted: FakeEngine, samples) -> None:  # type: ignore[no-untyped-def]
    scripted.enqueue("no sections here", "still none")
    result = CliRunner().invoke(
        app, ["run", "cxr-report", str(samples("dicom/cxr/highdicom_dx_image.dcm")), "--engine", "fake"]
    )
    assert result.exit_code == 0, result.output
    assert "did not validate (even after one repair)" in flat(result.output)
    assert "no FINDINGS: or IMPRESSION: section" in result.output
    assert flat(NOTICE) in flat(result.output)


def test_generic_options_and_bad_options(scripted: FakeEngine, samples) -> None:  # type: ignore[no-untyped-def]
    scripted.enqueue('{"findings": "clear", "impression": "normal"}')
    ok = CliRunner().invoke(
        app,
        [
            "run",
            "cxr-report",
            str(samples("dicom/cxr/highdicom_dx_image.dcm")),
            "-o",
            "format=json",
            "--engine",
            "fake",
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["parsed"] == {"findings": "clear", "impression": "normal"}
    assert scripted.params[0].json_schema is not None
    bad = CliRunner().invoke(app, ["run", "classify", "x.png", "-o", "colour=red", "--engine", "fake"])
    assert bad.exit_code != 0
    assert "colour" in str(bad.exception)
    assert len(scripted.prompts) == 1  # nothing ran for the bad one


def test_intake_script_escalates_in_red(scripted: FakeEngine, tmp_path: Path) -> None:
    script = tmp_path / "answers.txt"
    script.write_text("this morning\n\nnow my face is drooping and my arm is weak\nunused\n")
    result = CliRunner().invoke(
        app,
        ["run", "intake", "-q", "headache", "--script", str(script), "--engine", "fake"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "URGENT" in text
    assert "Call your local emergency number" in text
    assert "stroke" in text
    assert "unused" not in text  # the interview stopped at the red flag
    assert flat(NOTICE) in text


def test_intake_reads_stdin_until_eof(scripted: FakeEngine) -> None:
    result = CliRunner().invoke(
        app, ["run", "intake", "--engine", "fake", "--json"], input="a cough\nsince Monday\n"
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    patient = [t["text"] for t in record["parsed"]["transcript"] if t["role"] == "patient"]
    assert patient == ["a cough", "since Monday"]
    assert record["parsed"]["complete"] is False  # stdin ended before the checklist did


def test_run_on_the_real_tiny_vlm(tiny_vlm: Path, samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(
        app,
        [
            "run",
            "classify",
            str(samples("dicom/compressed/SC_jpeg_no_color_transform.dcm")),
            "--kind",
            "image",
            "--choices",
            "diabetic-retinopathy",
            "--engine",
            "transformers",
            "--model",
            str(tiny_vlm),
            "--max-new-tokens",
            "32",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["engine"] == "transformers"
    assert record["errors"] == []  # constrained to the enum: always one of the grades
    assert record["parsed"]["answer"] in ["no DR", "mild", "moderate", "severe NPDR", "proliferative DR"]
    assert record["usage"]["images"] == 1


def test_several_files_for_a_one_input_task_are_one_series(scripted: FakeEngine, samples) -> None:  # type: ignore[no-untyped-def]
    files = sorted(str(p) for p in samples("dicom/ct_series/head_ct2_4slices").iterdir())
    scripted.enqueue("[bold]not markup[/] Final Answer: no")
    result = CliRunner().invoke(app, ["run", "ct", *files, "-q", "Bleed?", "--engine", "fake"])
    assert result.exit_code == 0, result.output
    assert scripted.prompts[0].count("<start_of_image>") == 4
    assert "SLICE 4" in scripted.prompts[0]
    assert "[bold]not markup[/]" in result.output  # model text is printed as text
